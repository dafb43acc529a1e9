"""LiveCodeBench semantics: the private-test decoder (benign and malicious payloads), prompt,
extraction, comparisons, and fixture problems graded in the real sandbox with right and
wrong solutions (stdin and functional)."""

import base64
import json
import os
import pickle
import zlib
from pathlib import Path

import pytest

from quantgate.sandbox import Limits, Sandbox
from quantgate.scoring.lcb import (
    PrivateTestsError,
    Problem,
    decode_private_tests,
    extract_code,
    grading_plan,
    messages,
    pickled_string,
    stdout_matches,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lcb" / "problems.jsonl"
PROBLEMS = {
    p.question_id: p
    for p in (Problem.from_row(json.loads(line)) for line in FIXTURE.read_text().splitlines())
}


def _compress(obj) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()


# --- private tests ------------------------------------------------------------------------------


def test_upstreams_compressed_private_tests_decode_without_unpickling():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        payload = base64.b64encode(
            zlib.compress(pickle.dumps(json.dumps(tests), protocol=protocol))
        ).decode()
        assert decode_private_tests(payload) == tests
    assert decode_private_tests(json.dumps(tests)) == tests  # plain JSON, as in older rows
    assert len(PROBLEMS["lcbfx_sum"].private_tests) == 2  # the fixture's compressed rows


class _Exploit:
    """What a poisoned dataset row would pickle: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_rejected_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _compress(_Exploit(marker))
    with pytest.raises(PrivateTestsError, match="only a pickled plain string is accepted"):
        decode_private_tests(payload)
    assert not marker.exists()
    # a row of a real dataset with the exploit in it fails to load, naming the field
    row = json.loads(FIXTURE.read_text().splitlines()[0])
    row["private_test_cases"] = payload
    with pytest.raises(PrivateTestsError, match="private_test_cases"):
        Problem.from_row(row)
    assert not marker.exists()
    # the payload is live: upstream's decode (pickle.loads) runs the command
    pickle.loads(zlib.decompress(base64.b64decode(payload)))
    assert marker.exists()


@pytest.mark.parametrize("obj", [["a list"], {"a": "dict"}, ("a", "b"), 42, b"bytes"])
def test_anything_but_one_plain_string_is_rejected(obj):
    with pytest.raises(PrivateTestsError):
        decode_private_tests(_compress(obj))


def test_garbage_is_rejected_with_a_clear_error():
    with pytest.raises(PrivateTestsError, match="neither JSON nor base64"):
        decode_private_tests("not json, not base64 !!!")
    with pytest.raises(PrivateTestsError, match="not a valid pickle"):
        pickled_string(b"\x80\x04garbage")
    with pytest.raises(PrivateTestsError, match="exactly one plain string"):
        pickled_string(pickle.dumps("a") + pickle.dumps("b"))


# --- prompt, extraction, comparison, pass@k ------------------------------------------------------


def test_prompt_is_upstreams_generic_chat_format():
    stdin, functional = messages(PROBLEMS["lcbfx_sum"]), messages(PROBLEMS["lcbfx_twosum"])
    assert stdin[0]["role"] == "system" and stdin[0]["content"].startswith(
        "You are an expert Python programmer."
    )
    assert stdin[1]["content"].startswith("### Question:\nGiven N and then N integers")
    assert "Read the inputs from stdin" in stdin[1]["content"]
    assert "```python\n# YOUR CODE HERE\n```" in stdin[1]["content"]
    assert "You will use the following starter code" in functional[1]["content"]
    assert "def twoSum(self, nums: List[int], target: int)" in functional[1]["content"]
    assert functional[1]["content"].endswith(
        "### Answer: (use the provided format with backticks)\n\n"
    )


def test_code_comes_from_the_last_fenced_block():
    reply = "Idea:\n```python\nprint(1)\n```\nFinal:\n```python\nprint(2)\n```\n"
    assert extract_code(reply) == "print(2)"
    assert extract_code("print(3)") == ""  # fewer than two fences: no code, as upstream
    assert (
        extract_code("<think>```python\nprint(0)\n```</think>\n```python\nprint(4)\n```")
        == "print(4)"
    )
    assert extract_code("<think>```python\nprint(0)\n```\nstill thinking") == ""  # truncated


def test_stdin_comparison_is_line_wise_then_decimal():
    assert stdout_matches("6\n", "6")
    assert stdout_matches("  1.5 \n2\n\n", "1.50\n2")
    assert stdout_matches("1e3", "1000")
    assert not stdout_matches("6\n7", "6")  # line counts differ
    assert not stdout_matches("1000000000000000001", "1000000000000000000")  # no float rounding
    assert not stdout_matches("yes", "Yes")


# --- grading in the sandbox ---------------------------------------------------------------------

SUM_RIGHT = "import sys\ndata = sys.stdin.buffer.read().split()\nprint(sum(map(int, data[1:])))"
MEAN_RIGHT = (
    "n = int(input())\nxs = list(map(int, input().split()))\n"
    "if __name__ == '__main__':\n    print(sum(xs) / n)\n    print(max(xs))"
)
TWOSUM_RIGHT = (
    "class Solution:\n    def twoSum(self, nums, target):\n"
    "        seen = {}\n        for i, x in enumerate(nums):\n"
    "            if target - x in seen:\n                print('noise')\n"
    "                return (seen[target - x], i)\n            seen[x] = i\n"
)
CASES = [  # problem, solution, status, failing test
    ("lcbfx_sum", SUM_RIGHT, "passed", None),
    ("lcbfx_sum", "input()\nprint(sum(abs(int(x)) for x in input().split()))", "wrong_answer", 1),
    ("lcbfx_sum", "print(6)", "wrong_answer", 2),
    ("lcbfx_sum", "raise ValueError('boom')", "runtime_error", 0),
    ("lcbfx_sum", "input()\nprint(sum(map(int, input().split())))\nexit(1)", "passed", None),
    (
        "lcbfx_sum",
        "total = 0\ndef add(x):\n    global total\n    total += x\n"
        "input()\nfor x in input().split():\n    add(int(x))\nprint(total)",
        "passed",
        None,
    ),  # upstream's function wrapping would break the global
    ("lcbfx_sum", "while True:\n    pass", "timeout", 0),
    ("lcbfx_mean", MEAN_RIGHT, "passed", None),
    (
        "lcbfx_mean",
        "input()\nxs = list(map(int, input().split()))\nprint(max(xs))",
        "wrong_answer",
        0,
    ),
    ("lcbfx_twosum", TWOSUM_RIGHT, "passed", None),
    (
        "lcbfx_twosum",
        "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]",
        "wrong_answer",
        1,
    ),
    (
        "lcbfx_twosum",
        "class Solution:\n    def other(self, nums, target):\n        return []",
        "runtime_error",
        0,
    ),
    (
        "lcbfx_even",
        "class Solution:\n    def isEven(self, n):\n        return n % 2 == 0",
        "passed",
        None,
    ),
    (
        "lcbfx_even",
        "class Solution:\n    def isEven(self, n):\n        return 1 - n % 2",
        "passed",
        None,
    ),  # 1 == True: Python equality, as upstream
    (
        "lcbfx_even",
        "class Solution:\n    def isEven(self, n):\n        return {n}",
        "wrong_answer",
        0,
    ),  # not JSON: can never equal the expected value
]


@pytest.fixture(scope="module")
def box():
    return Sandbox(limits=Limits(wall_seconds=4, cpu_seconds=2, memory_mb=1024))


@pytest.mark.parametrize(
    "problem,solution,status,test",
    [pytest.param(*c, marks=pytest.mark.slow) if c[2] == "timeout" else c for c in CASES],
    ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)],
)
def test_fixture_problems_are_graded_as_upstream(box, problem, solution, status, test):
    files, argv, tests = grading_plan(PROBLEMS[problem], solution)
    verdict = box.judge(files, argv, tests)
    assert (verdict.status, verdict.test) == (status, test), verdict.detail
    assert verdict.isolation == box.isolation != "none"


def test_upstreams_import_prelude_is_available_to_solutions(box):
    solution = "n = int(input())\nprint(reduce(add, map(int, input().split())))"  # no imports
    files, argv, tests = grading_plan(PROBLEMS["lcbfx_sum"], solution)
    assert box.judge(files, argv, tests).passed
