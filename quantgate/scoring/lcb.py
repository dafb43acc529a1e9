"""LiveCodeBench: problem rows, prompt, code extraction and test semantics, as upstream.

Upstream is ``LiveCodeBench/LiveCodeBench`` 28fef95: ``lcb_runner/benchmarks/code_generation.py``
(rows), ``prompts/code_generation.py`` (the generic chat prompt), ``utils/extraction_utils.py``
(the last fenced block), ``evaluation/testing_util.py`` (grading). pass@1 is each problem's
mean over repeats (c / n, upstream's ``pass_k_utils.py`` at k = 1), computed by the runner.

    problem = Problem.from_row(row)       # a dataset row; private tests decoded safely
    messages(problem)                     # system + user, with the starter code when functional
    files, argv, tests = grading_plan(problem, extract_code(reply))
    Sandbox().judge(files, argv, tests)   # passed / wrong_answer (which test) / ...

Grading runs every test as its own sandboxed process and stops at the first failure, as upstream
stops. Two deliberate differences: a stdin program runs as a module named ``__main__`` with
upstream's import prelude and real stdin (upstream wraps it in a function, which breaks
``global`` statements; like upstream, a ``SystemExit`` ends it without failing it); a
functional result travels as JSON, so nested tuples compare equal to lists (upstream: only a
top-level tuple is turned into a list).

Private tests are decoded WITHOUT unpickling: upstream stores them as
base64(zlib(pickle(json-string))), and ``pickle.loads`` on downloaded data can run arbitrary
code. :func:`decode_private_tests` reads the pickle's opcodes (``pickletools.genops``, which
executes nothing) and accepts exactly one plain string; anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import pickletools
import zlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from quantgate.sandbox import IOTest
from quantgate.scoring.answers import THINK_CLOSE, is_truncated

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem "
    "specification) and will generate a correct Python program that matches the "
    "specification and passes all tests."
)
WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem "
    "and enclose your code within delimiters."
)
WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout "
    "(do not directly test on the sample inputs). Enclose your code within "
    "delimiters as follows. Ensure that when the python program runs, it reads "
    "the inputs, runs the algorithm and writes output to STDOUT."
)
IMPORT_PRELUDE = (
    "".join(
        f"from {m} import *\n"
        for m in (
            "string",
            "re",
            "datetime",
            "collections",
            "heapq",
            "bisect",
            "copy",
            "math",
            "random",
            "statistics",
            "itertools",
            "functools",
            "operator",
            "io",
            "sys",
            "json",
            "builtins",
            "typing",
        )
    )
    + "".join(
        f"import {m}\n"
        for m in (
            "string",
            "re",
            "datetime",
            "collections",
            "heapq",
            "bisect",
            "copy",
            "math",
            "random",
            "statistics",
            "itertools",
            "functools",
            "operator",
            "io",
            "sys",
            "json",
        )
    )
    + "sys.setrecursionlimit(50000)\n"
)
RESULT_MARK = "\n@@quantgate-result@@"
# The stdin runner: the program as __main__; SystemExit ends it as a normal return (upstream).
STDIN_RUNNER = """import sys
source = open("solution.py").read()
try:
    exec(compile(source, "solution.py", "exec"), {"__name__": "__main__"})
except SystemExit:
    pass
"""
# The functional harness: the solution's prints go to stderr; the return value, as JSON, last.
HARNESS = """import contextlib, json, sys
source = open("solution.py").read()
namespace = {"__name__": "tmp_sol"}
exec(compile(source, "solution.py", "exec"), namespace)
target = namespace["Solution"]() if "class Solution" in source else None
method = getattr(target, FN_NAME) if target is not None else namespace[FN_NAME]
args = [json.loads(line) for line in sys.stdin.read().split("\\n")]
with contextlib.redirect_stdout(sys.stderr):
    result = method(*args)
if isinstance(result, tuple):
    result = list(result)
try:
    text = json.dumps(result)
except (TypeError, ValueError) as exc:
    text = json.dumps({"quantgate_unserialisable": repr(result)[:300]})
sys.stdout.write(RESULT_MARK + text)
"""


class PrivateTestsError(ValueError):
    """``private_test_cases`` that are neither JSON nor upstream's pickled plain string."""


@dataclass(frozen=True)
class Problem:
    question_id: str
    question_title: str
    question_content: str
    platform: str
    contest_id: str
    contest_date: datetime
    starter_code: str
    difficulty: str
    public_tests: tuple[dict, ...]
    private_tests: tuple[dict, ...]
    fn_name: str | None  # metadata.func_name: functional (LeetCode) problems; None: stdin

    @classmethod
    def from_row(cls, row: dict) -> Problem:
        def tests(value):
            return tuple(json.loads(value) if isinstance(value, str) else value)

        metadata = row.get("metadata") or "{}"
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        private = row.get("private_test_cases") or "[]"
        return cls(
            question_id=str(row["question_id"]),
            question_title=row["question_title"],
            question_content=row["question_content"],
            platform=row["platform"],
            contest_id=str(row.get("contest_id", "")),
            contest_date=datetime.fromisoformat(row["contest_date"]),
            starter_code=row.get("starter_code") or "",
            difficulty=row["difficulty"],
            public_tests=tests(row["public_test_cases"]),
            private_tests=tuple(
                decode_private_tests(private) if isinstance(private, str) else private
            ),
            fn_name=metadata.get("func_name"),
        )

    @property
    def tests(self) -> tuple[dict, ...]:
        return self.public_tests + self.private_tests


def decode_private_tests(value: str) -> list[dict]:
    """``private_test_cases`` as stored upstream: JSON, else base64 -> zlib -> pickled str ->
    JSON. The pickle is never loaded; only a pickle of one plain string is accepted."""
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(value.encode("utf-8"), validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise PrivateTestsError(
            f"private_test_cases: neither JSON nor base64+zlib ({exc})"
        ) from None
    try:
        return json.loads(pickled_string(raw))
    except ValueError as exc:
        if isinstance(exc, PrivateTestsError):
            raise
        raise PrivateTestsError(
            f"private_test_cases: the decoded string is not JSON ({exc})"
        ) from None


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
_HARMLESS_OPS = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}


def pickled_string(data: bytes) -> str:
    """The str that ``pickle.dumps(some_str)`` produced, read from the opcodes without
    unpickling; anything else (a callable, a global, a second object) raises."""
    text, stop = None, None
    try:
        for opcode, arg, pos in pickletools.genops(data):
            if opcode.name in _STRING_OPS and text is None:
                text = arg
            elif opcode.name not in _HARMLESS_OPS:
                raise PrivateTestsError(
                    f"private_test_cases: the pickle holds a {opcode.name} opcode at byte {pos}; "
                    "only a pickled plain string is accepted (refusing to unpickle untrusted "
                    "data, which could run code)"
                )
            if opcode.name == "STOP":
                stop = pos
    except PrivateTestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError and others on garbage
        raise PrivateTestsError(f"private_test_cases: not a valid pickle ({exc})") from None
    if text is None or stop != len(data) - 1:
        raise PrivateTestsError(
            "private_test_cases: the pickle does not hold exactly one plain string"
        )
    return text


def user_prompt(problem: Problem) -> str:
    """Upstream's ``get_generic_question_template_answer``."""
    prompt = f"### Question:\n{problem.question_content}\n\n"
    if problem.starter_code:
        prompt += f"### Format: {WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def messages(problem: Problem) -> list[dict[str, str]]:
    """What upstream sends an OpenAI-style chat model (``LMStyle.OpenAIChat``)."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": user_prompt(problem)},
    ]


def extract_code(reply: str) -> str:
    """Upstream's ``extract_code``: the text between the last two lines holding a fence, "" when
    there are fewer than two. Reasoning is dropped first (text after the last ``</think>``); a
    think block still open at the end gives no code."""
    if is_truncated(reply):
        return ""
    if THINK_CLOSE in reply:
        reply = reply[reply.rfind(THINK_CLOSE) + len(THINK_CLOSE) :]
    lines = reply.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


def stdout_matches(prediction: str, expected: str) -> bool:
    """Upstream's stdin comparison: stripped lines, equal count; each line equal, else equal as
    a list of Decimals (so 0.50 == 0.5, but 1e18 + 1 != 1e18)."""
    got = [line.strip() for line in prediction.strip().split("\n")]
    want = [line.strip() for line in expected.strip().split("\n")]
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        try:
            if [Decimal(x) for x in a.split()] != [Decimal(x) for x in b.split()]:
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


def functional_matches(stdout: str, expected: str) -> bool:
    """The harness's JSON result == the expected JSON value (Python equality, as upstream)."""
    if RESULT_MARK not in stdout:
        return False
    try:
        return json.loads(stdout.rsplit(RESULT_MARK, 1)[1]) == json.loads(expected)
    except ValueError:
        return False


def grading_plan(problem: Problem, code: str) -> tuple[dict[str, str], list[str], list[IOTest]]:
    """(files, argv, tests) for :meth:`quantgate.sandbox.Sandbox.judge`."""
    if problem.fn_name is None:
        files = {"solution.py": IMPORT_PRELUDE + "\n" + code, "main.py": STDIN_RUNNER}
        tests = [
            IOTest(t["input"], t["output"], lambda out, want=t["output"]: stdout_matches(out, want))
            for t in problem.tests
        ]
        return files, ["main.py"], tests
    harness = HARNESS.replace("FN_NAME", repr(problem.fn_name)).replace(
        "RESULT_MARK", repr(RESULT_MARK)
    )
    files = {"solution.py": IMPORT_PRELUDE + "\n\n" + code, "harness.py": harness}
    tests = [
        IOTest(t["input"], t["output"], lambda out, want=t["output"]: functional_matches(out, want))
        for t in problem.tests
    ]
    return files, ["harness.py"], tests
