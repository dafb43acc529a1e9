"""LiveCodeBench (``runner: livecodebench``): code generation problems, graded in the sandbox.

    >>> result = run("livecodebench", suite, "fp8", endpoint,
    ...              out_dir=Path(".quantgate/runs/qwen3-32b/fp8/livecodebench"),
    ...              cache_dir=Path(".quantgate/cache/code"))                 # doctest: +SKIP
    >>> result.scores["abc301_a"], result.provenance["sandbox"]               # doctest: +SKIP
    (1.0, 'unshare+setuid')

Problems come from the hub dataset ``livecodebench/code_generation_lite`` at a pinned version
tag (``code.version``, e.g. ``release_v5``; ``code.revision`` pins the dataset commit) and date
window (``code.start_date`` / ``code.end_date``, compared with ``contest_date`` as upstream
does), or from a local JSONL file with the same fields (``code.path``).

The dataset is read file by file with ``huggingface_hub`` (the version tag -> files table of the
dataset's own loading script), not with ``datasets.load_dataset``: that needs the loading script,
which ``datasets`` >= 4 no longer runs (LiveCodeBench issue #108). Prompt, extraction and grading
are upstream's (quantgate.scoring.lcb); client, sandbox and the run around ``evaluate`` are
:mod:`quantgate.runners.code.common`'s.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from quantgate.config import CodeTask, Suite
from quantgate.runners.code import common
from quantgate.runners.code.common import code_runner, code_settings, request_params, truncated
from quantgate.sandbox import Sandbox, Verdict
from quantgate.scoring.answers import final_answer_text
from quantgate.scoring.lcb import Problem, extract_code, grading_plan, messages
from quantgate.serving.client import ChatClient, ChatRequest

DATASET = "livecodebench/code_generation_lite"
_VERSIONS = ["v1", "v2", "v3", "v4", "v5", "v6"]


def preflight(suite: Suite, task_name: str) -> None:
    """Before any server starts: the sandbox and a local ``code.path`` (the common checks)."""
    common.preflight(suite, task_name)


def version_files(tag: str) -> list[str]:
    """The dataset files of a version tag, as the dataset's loading script maps them:
    ``release_vN`` (cumulative), ``vN`` (one release), ``vM_vN`` (a range)."""

    def file(n: int) -> str:
        return "test.jsonl" if n == 1 else f"test{n}.jsonl"

    last = len(_VERSIONS)
    if tag == "release_latest":
        return [file(n) for n in range(1, last + 1)]
    match = re.fullmatch(r"release_v(\d+)|v(\d+)|v(\d+)_v(\d+)", tag)
    numbers = [int(g) for g in match.groups() if g] if match else []
    if not numbers or max(numbers) > last or (len(numbers) == 2 and numbers[0] >= numbers[1]):
        raise ValueError(
            f"code.version {tag!r}: expected release_v1..release_v{last}, "
            f"release_latest, v1..v{last} or vM_vN"
        )
    if tag.startswith("release_v"):
        return [file(n) for n in range(1, numbers[0] + 1)]
    return [file(n) for n in range(numbers[0], numbers[-1] + 1)]


def load_rows(suite: Suite, task_name: str) -> list[dict[str, Any]]:
    """The dataset rows: the local JSONL (``code.path``) or the hub files of ``code.version``."""
    code = code_settings(suite, task_name)
    if code.path:
        paths = [suite.resolve_path(code.path)]
    else:
        from huggingface_hub import hf_hub_download

        paths = [
            hf_hub_download(
                code.dataset or DATASET, name, repo_type="dataset", revision=code.revision
            )
            for name in version_files(code.version)
        ]
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def select(
    rows: list[dict[str, Any]],
    code: CodeTask,
    limit: int | None,
    items: list[str] | None = None,
) -> list[Problem]:
    """Rows in the date window (inclusive, compared as upstream: ``start <= contest_date <=
    end`` at midnight), minus ``code.exclude``, the first ``limit``; private tests decoded.
    ``items``: the rows of these question ids (in that order) instead of the first ``limit``;
    an id outside the window is a RunError."""
    start = datetime.combine(code.start_date, datetime.min.time()) if code.start_date else None
    end = datetime.combine(code.end_date, datetime.min.time()) if code.end_date else None
    chosen = []
    for row in rows:
        when = datetime.fromisoformat(row["contest_date"])
        if (
            (start and when < start)
            or (end and when > end)
            or str(row["question_id"]) in code.exclude
        ):
            continue
        chosen.append(row)
        if items is None and limit is not None and len(chosen) == limit:
            break
    if items is not None:
        chosen = common.rows_of(chosen, items, "question_id", "LiveCodeBench problem")
    return [Problem.from_row(row) for row in chosen]


def prompt_messages(problem: Problem, code: CodeTask) -> list[dict[str, str]]:
    """Upstream's system + user prompt, or the suite's ``code.prompt`` template (one user
    message) over the problem's fields."""
    if code.prompt is None:
        return messages(problem)
    fields = {
        "question_content": problem.question_content,
        "question_id": problem.question_id,
        "question_title": problem.question_title,
        "starter_code": problem.starter_code,
        "platform": problem.platform,
        "difficulty": problem.difficulty,
    }
    return [{"role": "user", "content": code.prompt.format(**fields)}]


_TINY_ANSWER = re.compile(r"^\s*(?:The answer is\s+(-?\d+)\.?|([A-Za-z]+))\s*$")


def tiny_answer_code(reply: str, problem: Problem) -> str:
    """FIXTURE extraction for the tiny suite only (``code.extraction: tiny_answer``): the tiny
    model cannot write code; it replies "The answer is 15." or a word. This turns such a reply
    into the program that prints it (stdin problems) or a ``Solution`` method returning it
    (functional problems); any other reply gives no code. What it exercises is everything around
    the model: server, client cache, sandbox, LiveCodeBench grading, gate; not code generation."""
    match = _TINY_ANSWER.match(reply)
    if not match:
        return ""
    value = int(match.group(1)) if match.group(1) is not None else match.group(2)
    if problem.fn_name is None:
        return f"print({value!r})\n"
    return f"class Solution:\n    def {problem.fn_name}(self, *args):\n        return {value!r}\n"


def judge(box: Sandbox, problem: Problem, program: str) -> Verdict:
    if not program.strip():
        return Verdict("no_code", None, "no fenced code block in the reply", box.isolation)
    files, argv, tests = grading_plan(problem, program)
    return box.judge(files, argv, tests)


def evaluate(
    task_name: str,
    suite: Suite,
    client: ChatClient,
    box: Sandbox,
    limit: int | None,
    items: list[str] | None = None,
) -> tuple[dict[str, list[float]], list[dict], dict[str, Any]]:
    """Per problem, one 0/1 per repeat (all tests pass); samples; provenance (``items``: only
    these problem ids)."""
    task, code = suite.tasks[task_name], code_settings(suite, task_name)
    problems = select(load_rows(suite, task_name), code, limit, items)
    pairs = [(p, r) for r in range(task.repeats) for p in problems]
    requests = [
        ChatRequest(tuple(prompt_messages(p, code)), request_params(suite, task_name, r))
        for p, r in pairs
    ]
    answers = client.complete(requests, desc=client.label)
    extract = (
        tiny_answer_code
        if code.extraction == "tiny_answer"
        else (lambda reply, problem: extract_code(reply))
    )
    programs = [extract(a.content, p) for a, (p, _) in zip(answers, pairs)]
    with ThreadPoolExecutor(code.workers) as pool:
        verdicts = list(pool.map(lambda i: judge(box, pairs[i][0], programs[i]), range(len(pairs))))
    per_item: dict[str, list[float]] = {}
    samples = []
    for (problem, repeat), request, answer, program, verdict in zip(
        pairs, requests, answers, programs, verdicts
    ):
        per_item.setdefault(problem.question_id, []).append(float(verdict.passed))
        samples.append(
            {
                "item": problem.question_id,
                "repeat": repeat,
                "mode": "stdin" if problem.fn_name is None else "functional",
                "tests": len(problem.tests),
                "status": verdict.status,
                "failed_test": verdict.test,
                "detail": verdict.detail[:500],
                "isolation": verdict.isolation,
                "finish_reason": answer.finish_reason,
                "completion_tokens": answer.completion_tokens,
                "truncated": truncated(answer, request.params),
                "empty": not final_answer_text(answer.content).strip(),
                "no_answer": not program.strip(),
                "code": program[:20000],
                "response": answer.content[:20000],
            }
        )
    return (
        per_item,
        samples,
        {
            "dataset": code.path or code.dataset or DATASET,
            "revision": code.revision,
            "version": code.version,
            "start_date": str(code.start_date or ""),
            "end_date": str(code.end_date or ""),
            "problems": len(problems),
            "extraction": code.extraction,
        },
    )


#: The runner: the preflight first (no server starts for a case that skips), then generation,
#: execution in the sandbox and scoring through :func:`~.common.run_code_task`.
run = code_runner("LiveCodeBench", preflight=preflight, evaluate=evaluate)
