"""SciCode (``runner: scicode``): multi-step scientific coding problems, each step tested in the
sandbox against SciCode's numeric targets.

    >>> result = run("scicode", suite, "fp8", endpoint, out_dir=Path("runs/scicode"),
    ...              cache_dir=Path("cache/code"))                            # doctest: +SKIP
    >>> result.provenance["subproblem_accuracy"]                              # doctest: +SKIP

Problems: the hub dataset ``SciCode1/SciCode`` (``code.split``: ``validation`` = 15 problems /
50 tested steps, ``test`` = 65 / 288; ``code.revision`` pins it) or a local JSONL with the same
fields (``code.path``). Targets: SciCode's ``test_data.h5`` (``code.h5_path``); the code SciCode
provides for steps 13.6, 62.1 and 76.3 is read from the same directory (``13.6.txt`` ..., as in
SciCode's ``eval/data/``). Without a file the selected problems need, the cases are skipped,
saying where to get it (:func:`preflight`, before any server starts).

Generation is step by step, all problems at once per round: step k's prompt holds the model's
own code for steps < k (upstream's multi-step protocol), so every round waits for the previous
one. Prompts and answers are cached per precision by the shared client (never by model name, as
upstream's logs are). Items: problems (pass = every tested step passes; the three steps upstream
provides are not tested and do not count against a problem) or, with ``code.items: steps``, the
steps themselves; per-step accuracy is reported either way. The step scripts import the
``scicode`` shim (quantgate/scoring/scicode_shim/); client, sandbox and the run around
``evaluate`` are :mod:`quantgate.runners.code.common`'s.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quantgate.config import Suite
from quantgate.runners.code import common
from quantgate.runners.code.common import (
    MissingData,
    code_runner,
    code_settings,
    request_params,
    truncated,
)
from quantgate.sandbox import Sandbox
from quantgate.scoring import scicode as sc
from quantgate.scoring.answers import final_answer_text
from quantgate.serving.client import ChatClient, ChatRequest

DATASET = "SciCode1/SciCode"
H5_SOURCE = (
    "https://drive.google.com/drive/folders/1W5GZW6_bdiDAiipuFMqdUhvUaHIj6-pR "
    "(the 'numeric test results' of https://github.com/scicode-bench/SciCode#readme)"
)


def preflight(suite: Suite, task_name: str) -> None:
    """Before any server starts: the common checks (sandbox, ``code.path``), then the targets
    and the provided steps' code (:class:`MissingData` saying where to get them)."""
    common.preflight(suite, task_name)
    check_targets(suite, task_name)


def targets_path(suite: Suite, task_name: str) -> Path | None:
    code = code_settings(suite, task_name)
    return suite.resolve_path(code.h5_path) if code.h5_path else None


def check_targets(suite: Suite, task_name: str) -> None:
    path = targets_path(suite, task_name)
    if path is None:
        raise MissingData(
            f"{suite.path}: tasks.{task_name}.code.h5_path is not set: SciCode's "
            f"numeric targets (test_data.h5) come from {H5_SOURCE}"
        )
    if not path.exists():
        raise MissingData(
            f"SciCode's numeric targets are not at {path}: download "
            f"test_data.h5 from {H5_SOURCE} to that path (or point "
            f"tasks.{task_name}.code.h5_path at your copy), with "
            f"{', '.join(sorted(set(sc.PROVIDED.values())))} from "
            f"{sc.PROVIDED_SOURCE} beside it"
        )
    code = code_settings(suite, task_name)
    if code.path:  # a local file: only the provided steps of its problems are needed
        needed = load_problems(suite, task_name, None)
    else:  # the hub dataset: any of the three problems not excluded
        needed = [
            {"problem_id": pid, "sub_steps": [None] * (step + 1)}
            for pid, step in sc.PROVIDED
            if pid not in code.exclude
        ]
    check_provided(needed, path.parent)


def check_provided(problems: list[dict], data_dir: Path) -> None:
    missing = sc.missing_provided(problems, data_dir)
    if missing:
        raise MissingData(sc.provided_message(missing, data_dir))


def load_problems(
    suite: Suite, task_name: str, limit: int | None, items: list[str] | None = None
) -> list[dict[str, Any]]:
    """The task's problems (minus ``code.exclude``): the first ``limit``, or those of ``items``
    (problem ids; step ids with ``code.items: steps``, whose problems run whole), in that
    order."""
    code = code_settings(suite, task_name)
    if code.path:
        lines = suite.resolve_path(code.path).read_text(encoding="utf-8").splitlines()
        problems = [json.loads(line) for line in lines if line.strip()]
    else:
        from datasets import load_dataset

        problems = [
            dict(p)
            for p in load_dataset(code.dataset or DATASET, split=code.split, revision=code.revision)
        ]
    problems = [p for p in problems if str(p["problem_id"]) not in code.exclude]
    if items is not None:
        if code.items == "steps":
            owner = {
                str(sub["step_number"]): str(p["problem_id"])
                for p in problems
                for sub in p["sub_steps"]
            }
            unknown = [i for i in items if str(i) not in owner]
            wanted = list(dict.fromkeys(owner.get(str(i), str(i)) for i in items))
            if unknown:
                wanted = unknown  # rows_of names them
        else:
            wanted = [str(i) for i in items]
        return common.rows_of(problems, wanted, "problem_id", "SciCode problem/step")
    return problems[:limit] if limit is not None else problems


def generate(
    problems: list[dict],
    suite: Suite,
    task_name: str,
    client: ChatClient,
    repeat: int,
    data_dir: Path,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Round k asks every problem's step k at once; (problem_id, step) -> prompt prefix, code,
    answer. Provided steps contribute their code (read from ``data_dir``) and are not asked."""
    code = code_settings(suite, task_name)
    params = request_params(suite, task_name, repeat)
    previous = {p["problem_id"]: [None] * len(p["sub_steps"]) for p in problems}
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for step in range(max(len(p["sub_steps"]) for p in problems)):
        batch = []
        for p in problems:
            if step >= len(p["sub_steps"]):
                continue
            if sc.is_provided(p, step):
                previous[p["problem_id"]][step] = sc.provided_code(p, step, data_dir)
                continue
            prompt, prefix = sc.step_prompt(
                p, step, previous[p["problem_id"]], code.with_background
            )
            batch.append((p, prefix, ChatRequest.user(prompt, **params)))
        answers = client.complete(
            [r for _, _, r in batch], desc=f"{client.label} step {step + 1} (repeat {repeat})"
        )
        for (p, prefix, request), answer in zip(batch, answers):
            script = sc.extract_python_script(answer.content)
            previous[p["problem_id"]][step] = script
            out[(p["problem_id"], step)] = {
                "program": f"{prefix}\n{script}",
                "answer": answer,
                "params": request.params,
                "script": script,
            }
    return out


def run_step(
    box: Sandbox, problem: dict, step: int, program: str, h5: Path, targets: dict[str, bytes]
) -> dict[str, Any]:
    sub = problem["sub_steps"][step]
    step_id = str(sub["step_number"])
    try:
        if step_id not in targets:
            targets[step_id] = sc.step_targets(h5, step_id)
    except KeyError as exc:
        return {"status": "no_targets", "detail": str(exc), "failed_test": None}
    run = box.run(
        sc.step_files(program, step_id, list(sub["test_cases"]), targets[step_id]), ["step.py"]
    )
    status = (
        "passed"
        if run.status == "ok"
        else (
            "wrong_answer"
            if run.status == "runtime_error" and "AssertionError" in run.stderr
            else run.status
        )
    )
    return {
        "status": status,
        "failed_test": sc.failed_test(run.stderr) if status != "passed" else None,
        "detail": run.stderr[-500:] if status != "passed" else "",
        "isolation": run.isolation,
    }


def evaluate(
    task_name: str,
    suite: Suite,
    client: ChatClient,
    box: Sandbox,
    limit: int | None,
    items: list[str] | None = None,
) -> tuple[dict[str, list[float]], list[dict], dict[str, Any]]:
    task, code = suite.tasks[task_name], code_settings(suite, task_name)
    check_targets(suite, task_name)
    h5 = targets_path(suite, task_name)
    problems = load_problems(suite, task_name, limit, items)
    check_provided(problems, h5.parent)
    by_id = {p["problem_id"]: p for p in problems}
    targets: dict[str, bytes] = {}
    per_item: dict[str, list[float]] = {}
    samples: list[dict] = []
    steps_passed = steps_tested = solved = 0
    for repeat in range(task.repeats):
        generated = generate(problems, suite, task_name, client, repeat, h5.parent)
        keys = sorted(generated, key=lambda k: (str(k[0]), k[1]))
        with ThreadPoolExecutor(code.workers) as pool:
            results = list(
                pool.map(
                    lambda k, generated=generated: run_step(
                        box, by_id[k[0]], k[1], generated[k]["program"], h5, targets
                    ),
                    keys,
                )
            )
        outcome: dict[str, list[bool]] = {}
        for key, result in zip(keys, results):
            problem, step = by_id[key[0]], key[1]
            passed = result["status"] == "passed"
            outcome.setdefault(str(key[0]), []).append(passed)
            step_id = str(problem["sub_steps"][step]["step_number"])
            answer = generated[key]["answer"]
            if code.items == "steps":
                per_item.setdefault(step_id, []).append(float(passed))
            samples.append(
                {
                    "item": step_id,
                    "problem": str(key[0]),
                    "repeat": repeat,
                    **result,
                    "finish_reason": answer.finish_reason,
                    "completion_tokens": answer.completion_tokens,
                    "truncated": truncated(answer, generated[key]["params"]),
                    "empty": not final_answer_text(answer.content).strip(),
                    "no_answer": not generated[key]["script"].strip(),
                    "code": generated[key]["script"][:20000],
                    "response": answer.content[:20000],
                }
            )
        steps_tested += len(results)
        steps_passed += sum(r["status"] == "passed" for r in results)
        for problem_id, passes in outcome.items():
            solved += all(passes)
            if code.items == "problems":
                per_item.setdefault(problem_id, []).append(float(all(passes)))
    runs = max(task.repeats, 1)
    if items is not None and code.items == "steps":  # only the steps asked for are items
        asked = {str(i) for i in items}
        per_item = {k: v for k, v in per_item.items() if k in asked}
        samples = [s for s in samples if s["item"] in asked]
    return (
        per_item,
        samples,
        {
            "dataset": code.path or code.dataset or DATASET,
            "revision": code.revision,
            "split": code.split,
            "with_background": code.with_background,
            "items": code.items,
            "problems": len(problems),
            "steps_tested": steps_tested // runs,
            "subproblem_accuracy": steps_passed / steps_tested if steps_tested else None,
            "main_problem_resolve_rate": solved / (len(problems) * runs) if problems else None,
            "targets": str(h5),
        },
    )


#: The runner: the preflight first (no server starts for a case that skips), then generation,
#: execution in the sandbox and scoring through :func:`~.common.run_code_task`.
run = code_runner("SciCode", preflight=preflight, evaluate=evaluate)
