"""SciCode: step-wise prompts with the previous steps' code, code extraction, a step's test script.

Follows the protocol of ``scicode-bench/SciCode`` 588b406 (``eval/scripts/gencode.py``,
``eval/scripts/test_generated_code.py``), read, not copied: the prompt templates below are
quantgate's own wording; the code SciCode provides for steps 13.6, 62.1 and 76.3 is read at run
time from SciCode's ``eval/data/`` (the directory of ``test_data.h5``); what a step's test script
imports in the sandbox is quantgate's re-implementation in ``quantgate/scoring/scicode_shim/``.

    prompt, prefix = step_prompt(problem, k, previous, with_background=False)
    previous[k] = extract_python_script(reply)
    files = step_files(prefix + "\\n" + previous[k], step_id, test_cases, step_targets(h5, step_id))
    Sandbox().run(files, ["step.py"])     # exit status 0: the step passes

A step's program is, as upstream: the problem's dependencies, the code of the earlier steps (the
model's own, so errors carry forward), this step's code, then SciCode's test cases with each
``target`` read from the step's numeric targets (``test_data.h5``, copied per step into the
sandbox as ``targets.h5``). Exit status 0 means the step passes.
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path

from quantgate.scoring.answers import THINK_CLOSE, is_truncated

SHIM = Path(__file__).resolve().parent / "scicode_shim"
# (problem_id, 0-based step) -> the file in SciCode's eval/data/ holding the step's provided
# code: neither generated nor tested; later steps see its function
PROVIDED = {("13", 5): "13.6.txt", ("62", 0): "62.1.txt", ("76", 2): "76.3.txt"}
PROVIDED_SOURCE = (
    "SciCode's repository, eval/data/ "
    "(https://github.com/scicode-bench/SciCode/tree/main/eval/data)"
)
TEST_MARK = "@@quantgate-scicode-test"

# Placeholders: {problem_steps_str} (earlier steps: description, code; separated by ------),
# {next_step_str} (this step's description, then its function header and return line),
# {dependencies} (the problem's import lines). As upstream, the prompt without backgrounds asks
# the model to write the step's background itself, as a leading comment.
PROMPT_WITHOUT_BACKGROUND = """\
TASK:
A scientific computing problem is being solved step by step in Python. Below are the steps \
solved so far, each described and followed by its code, and then the next step. Your job is to \
write the code of the next step.

STEPS SO FAR:
{problem_steps_str}

NEXT STEP:
Implement the function whose header is given below, as the description asks. Open your code \
with a comment that starts with 'Background: ' and sets out the scientific knowledge this step \
relies on.

{next_step_str}

ALLOWED IMPORTS:
These imports are already in place; use nothing else and do not repeat them in your code.
{dependencies}

ANSWER FORMAT:
1. Answer in one python code block (```python ... ```).
2. Put the 'Background: ' comment first, then the complete, runnable code of the next step, \
keeping the given function header.
3. Write only the next step: no code of the earlier steps (call their functions as their headers \
above define them), no example usage, no tests.
"""

PROMPT_WITH_BACKGROUND = """\
TASK:
A scientific computing problem is being solved step by step in Python; each step comes with the \
background knowledge it needs. Your job is to write the code of the next step.

STEPS SO FAR:
The steps solved so far, each described and followed by its code, which the next step builds on:

{problem_steps_str}

NEXT STEP:
Implement the function whose header is given below, as the description asks.

{next_step_str}

ALLOWED IMPORTS:
These imports are already in place; use nothing else and do not repeat them in your code.

{dependencies}

ANSWER FORMAT:
Answer in one python code block (```python ... ```) holding the complete, runnable code of the \
next step, keeping the given function header. Write only the next step: no imports, no code of \
the earlier steps (call their functions as their headers above define them, unchanged), no \
example usage, no tests.
"""


class ProvidedCodeMissing(FileNotFoundError):
    """A step whose code SciCode provides, and its file is not in the data directory."""


def template(with_background: bool) -> str:
    return PROMPT_WITH_BACKGROUND if with_background else PROMPT_WITHOUT_BACKGROUND


def is_provided(problem: dict, step: int) -> bool:
    return (str(problem["problem_id"]), step) in PROVIDED


def extract_function_name(header: str) -> str:
    match = re.search(r"\bdef\s+(\w+)\s*\(", header) or re.search(r"\bclass\s+(\w+)\s*\(", header)
    if not match:
        raise ValueError("Function name or class name not found.")
    return match.group(1)


def get_function_from_code(code: str | None, name: str) -> str | None:
    """The source of function or class ``name`` in ``code`` (upstream: None if absent, the whole
    code if it does not parse)."""
    if code is None:
        return None
    try:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                return ast.unparse(node)
    except Exception:  # noqa: BLE001 - upstream's behaviour
        return code
    return None


def extract_python_script(response: str) -> str:
    """Upstream's extraction (the first ```python block, else the first fenced block, else the
    whole text; import lines removed), after dropping reasoning: the text after the last
    ``</think>``; a think block still open gives no code."""
    if is_truncated(response):
        return ""
    if THINK_CLOSE in response:
        response = response[response.rfind(THINK_CLOSE) + len(THINK_CLOSE) :]
    if "```" in response:
        script = (
            response.split("```python")[1].split("```")[0]
            if "```python" in response
            else response.split("```")[1].split("```")[0]
        )
    else:
        script = response
    return re.sub(r"^\s*(import .*|from .*\s+import\s+.*)", "", script, flags=re.MULTILINE)


def provided_files(problems: list[dict]) -> list[str]:
    """The files of SciCode's eval/data/ these problems need (their provided steps)."""
    return [
        name
        for (pid, step), name in sorted(PROVIDED.items())
        for p in problems
        if str(p["problem_id"]) == pid and step < len(p["sub_steps"])
    ]


def missing_provided(problems: list[dict], data_dir: Path) -> list[str]:
    return [name for name in provided_files(problems) if not (Path(data_dir) / name).is_file()]


def provided_message(missing: list[str], data_dir: Path) -> str:
    return (
        f"SciCode provides the code of steps {', '.join(n[:-4] for n in missing)}; "
        f"{', '.join(missing)} not found in {data_dir}: copy them from {PROVIDED_SOURCE} "
        "into the directory of test_data.h5"
    )


def provided_code(problem: dict, step: int, data_dir: Path) -> str | None:
    """The function of a provided step (what later steps see), read from ``data_dir`` (SciCode's
    eval/data/, next to test_data.h5), or None for a step that is not provided.
    :class:`ProvidedCodeMissing` when the file is not there."""
    name = PROVIDED.get((str(problem["problem_id"]), step))
    if name is None:
        return None
    path = Path(data_dir) / name
    if not path.is_file():
        raise ProvidedCodeMissing(provided_message([name], Path(data_dir)))
    header = problem["sub_steps"][step]["function_header"]
    return get_function_from_code(path.read_text(encoding="utf-8"), extract_function_name(header))


def step_prompt(
    problem: dict, step: int, previous: list[str | None], with_background: bool
) -> tuple[str, str]:
    """(prompt, program prefix) for 0-based ``step``: upstream's ``process_problem_steps`` +
    ``generate_prompt_with_steps``; the prefix is the dependencies and earlier steps' code."""
    steps = problem["sub_steps"]

    def description(i: int) -> str:
        text = steps[i]["step_description_prompt"]
        return text + "\n" + steps[i]["step_background"] if with_background else text

    lines, earlier = [], []
    for i in range(step):
        lines += [description(i), previous[i], "------"]
        earlier.append(previous[i])
    header = f"{steps[step]['function_header']}\n\n{steps[step]['return_line']}"
    next_step = "\n\n".join([description(step), header])
    steps_text = "\n\n".join(str(x) for x in lines[:-1])
    dependencies = problem["required_dependencies"]
    prompt = template(with_background).format(
        problem_steps_str=steps_text, next_step_str=next_step, dependencies=dependencies
    )
    return prompt, f"{dependencies}\n" + "\n".join(str(x) for x in earlier) + "\n"


def step_test_script(program: str, step_id: str, tests: list[str]) -> str:
    """A step's test file, laid out as upstream's; a marker on stderr before each test says
    which one failed."""
    out = [
        program,
        "\n\nfrom scicode.parse.parse import process_hdf5_to_tuple\n\n",
        f"targets = process_hdf5_to_tuple({step_id!r}, {len(tests)}, 'targets.h5')\n",
    ]
    for i, test in enumerate(tests):
        out.append(f"__import__('sys').stderr.write('{TEST_MARK} {i}\\n')\n")
        out.append(f"target = targets[{i}]\n\n")
        out += [line + "\n" for line in test.split("\n")]
    return "".join(out)


def failed_test(stderr: str) -> int | None:
    marks = re.findall(rf"{TEST_MARK} (\d+)", stderr)
    return int(marks[-1]) if marks else None


def step_targets(h5_path: Path, step_id: str) -> bytes:
    """An HDF5 file holding only ``step_id``'s group of SciCode's ``test_data.h5``."""
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "targets.h5"
        with h5py.File(h5_path, "r") as src, h5py.File(out, "w") as dst:
            if step_id not in src:
                raise KeyError(f"step {step_id} has no targets in {h5_path}")
            src.copy(src[step_id], dst, name=step_id)
        return out.read_bytes()


def support_files() -> dict[str, str]:
    """The ``scicode`` package a test script imports (target reader, comparison helpers):
    quantgate's re-implementation in ``quantgate/scoring/scicode_shim/``."""
    return {
        p.relative_to(SHIM).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(SHIM.rglob("*.py"))
    }


def step_files(program: str, step_id: str, tests: list[str], targets: bytes) -> dict:
    return {
        "step.py": step_test_script(program, step_id, tests),
        "targets.h5": targets,
        **support_files(),
    }
