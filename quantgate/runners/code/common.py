"""What the code runners share: the chat client, request parameters, the sandbox, the common
preflight and :func:`run_code_task`, which is handed the runner's own ``evaluate``.

    def run(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit=None, items=None):
        preflight(suite, task_name)                      # the runner's checks: before any server
        return run_code_task(task_name, suite, precision, endpoint, out_dir=out_dir,
                             cache_dir=cache_dir, limit=limit, items=items, evaluate=evaluate)

``evaluate(task_name, suite, client, box, limit, items=None) -> (per_item, samples,
provenance)`` generates through ``client`` and runs every program in ``box``
(:mod:`.livecodebench`, :mod:`.scicode`); ``items``: only these problem (or SciCode step) ids, in
that order, the task's limit not applied. This module imports neither runner.

Generations go through the shared :class:`~quantgate.serving.client.ChatClient`; its sqlite cache
lives under ``cache_dir/<suite>/<precision>/<task>/`` and is keyed by what answered
(:meth:`~quantgate.runs.Endpoint.answerer`: engine, version, checkpoint and revision, or an
external deployment's URL and served model), so a re-run against the same server re-scores
without generating and nothing is shared across precisions or servers. Sandbox verdicts are
kept beside it (:class:`JudgedSandbox`, ``verdicts.jsonl``): a program judged before on the same
files, command, tests, limits, isolation and interpreter (its path and version) is not executed
again, so a cached LiveCodeBench re-run executes nothing; timeouts and exceeded limits, which
depend on the machine's load, are never kept. SciCode's steps run through the box's uncached
``run`` (their verdict is read from the run's stderr): a re-run executes them again.

``truncated`` (quantgate.hygiene): the server stopped the answer at the token limit
(:func:`stopped_by_limit`: its ``finish_reason``, else its completion tokens against the
request's ``max_tokens``) or its think block is still open.

Items: one per problem (LiveCodeBench; SciCode by default), its score the fraction of repeats
that pass every test (the unbiased pass@1 estimate c/n).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantgate import config
from quantgate.config import CodeTask, Suite
from quantgate.hygiene import stopped_at_limit
from quantgate.jsonl import read_jsonl_lenient, write_jsonl
from quantgate.runners import EndpointSource, answerer_of
from quantgate.runs import (
    NotRunnable,
    RunError,
    TaskRun,
    answerer_key,
    answerer_provenance,
    finish_run,
)
from quantgate.sandbox import IOTest, Limits, Sandbox, Verdict
from quantgate.scoring.answers import is_truncated
from quantgate.serving.client import ChatAnswer, ChatClient

# (task_name, suite, client, box, limit, items=None) -> (per item: one score per repeat, samples,
# provenance)
Evaluate = Callable[..., tuple[dict[str, list[float]], list[dict], dict[str, Any]]]


class MissingData(NotRunnable):
    """A file the task needs is not there; the message says where to get it (cases skip)."""


def code_settings(suite: Suite, task_name: str) -> CodeTask:
    return suite.tasks[task_name].code or CodeTask()


def preflight(suite: Suite, task_name: str) -> None:
    """Before any server starts: :class:`~quantgate.sandbox.SandboxUnavailable` when no isolation
    works here, :class:`MissingData` when the task's ``code.path`` is missing. Runners add their
    own checks (SciCode's targets)."""
    code = code_settings(suite, task_name)
    sandbox_for(code)
    if code.path and not suite.resolve_path(code.path).exists():
        raise MissingData(
            f"{suite.path}: tasks.{task_name}.code.path: {suite.resolve_path(code.path)} not found"
        )


def chat_client(
    suite: Suite, task_name: str, precision: str, endpoint: EndpointSource, cache_dir: Path
) -> ChatClient:
    task = suite.tasks[task_name]
    # what answers: the server (engine, version, checkpoint build or deployment) and the suite's
    # settings for the precision (--quantization, server arguments, environment), as lm-eval's
    # and LiveBench's caches key it
    answerer = {
        **answerer_of(endpoint),
        "precision": suite.precisions[precision].model_dump(mode="json"),
    }
    return ChatClient(
        endpoint,
        identity=f"{suite.name}/{precision}/{answerer_key(answerer)}",
        concurrency=task.num_concurrent,
        timeout=task.timeout,
        deadline=2 * task.timeout,  # one slow answer and a retry, backoff included
        progress=True,
        cache_path=cache_dir / suite.name / precision / task_name / "requests.sqlite",
        label=f"{suite.name}-{task_name}-{precision}",
    )


def request_params(suite: Suite, task_name: str, repeat: int) -> dict[str, Any]:
    """The chat-completion parameters of one repeat (the suite's seed + repeat)."""
    seed = suite.generation.seed
    return config.request_params(
        suite.gen_kwargs(task_name, None if seed is None else seed + repeat)
    )


def stopped_by_limit(answer: ChatAnswer, params: dict[str, Any]) -> bool:
    """Whether the server stopped ``answer`` at the token limit
    (:func:`quantgate.hygiene.stopped_at_limit`): its ``finish_reason``, else its
    ``completion_tokens`` against the ``max_tokens`` it was asked with (``params``)."""
    return bool(
        stopped_at_limit(answer.finish_reason, answer.completion_tokens, params.get("max_tokens"))
    )


def truncated(answer: ChatAnswer, params: dict[str, Any]) -> bool:
    """The hygiene flag: stopped at the token limit, or a think block still open."""
    return stopped_by_limit(answer, params) or is_truncated(answer.content)


def rows_of(rows: list[dict], items: list[str], key: str, what: str) -> list[dict]:
    """The rows whose ``key`` is one of ``items``, in the order of ``items`` (every row of an id
    that has several); an id with no row is a RunError."""
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(str(row[key]), []).append(row)
    unknown = [str(i) for i in items if str(i) not in by_id]
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise RunError(
            f"{len(unknown)} {what} ids not among the task's selected problems: "
            f"{', '.join(unknown[:5])}{more}"
        )
    return [row for i in items for row in by_id[str(i)]]


def sandbox_for(code: CodeTask) -> Sandbox:
    """The sandbox for a task's programs: the per-test time limit (plus interpreter start-up)."""
    seconds = code.test_timeout
    return Sandbox(
        limits=Limits(
            wall_seconds=seconds + 3,
            cpu_seconds=math.ceil(seconds) + 1,
            memory_mb=code.memory_mb,
            processes=64,
            open_files=256,
            file_size_mb=64,
            workdir_mb=256,
        )
    )


#: Bump when what decides a verdict changes outside its key (the comparators of
#: quantgate.scoring.lcb, how the sandbox judges): kept verdicts of another version are not used.
VERDICTS_VERSION = 1
VERDICTS_FILE = "verdicts.jsonl"
_KEPT = ("passed", "wrong_answer", "runtime_error")  # what the program decides, not the load


def interpreter_version(python: str) -> str:
    """What identifies the interpreter at ``python`` without starting it: ``sys.version`` for
    this process's own; else the binary it resolves to, with its size and modification time
    (an upgrade in place changes them; a binary that is not there is ``missing``)."""
    if python == sys.executable:
        return sys.version
    real = os.path.realpath(python)
    try:
        stat = os.stat(real)
    except OSError:
        return f"{real} missing"
    return f"{real} {stat.st_size} {stat.st_mtime_ns}"


class JudgedSandbox:
    """``box`` whose :meth:`judge` verdicts are kept in ``path`` (JSON lines, written by
    :meth:`save`): the same program on the same tests, limits, isolation and interpreter
    (``box.python`` and :func:`interpreter_version`, looked at once here) is judged once.
    Everything else (``run``, ``isolation``, ``limits``) is the box's."""

    def __init__(self, box: Sandbox, path: Path) -> None:
        self.box, self.path = box, Path(path)
        self._python = (box.python, interpreter_version(box.python))
        self._lock = threading.Lock()
        self._known = read_jsonl_lenient(self.path, "key")  # what is unreadable is judged again
        self._changed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.box, name)

    def judge(
        self,
        files: dict[str, str | bytes],
        argv: list[str],
        tests: list[IOTest],
        *,
        limits: Limits | None = None,
    ) -> Verdict:
        key = self._key(files, argv, tests, limits or self.box.limits)
        with self._lock:
            row = self._known.get(key)
        if row is not None:
            return Verdict(row["status"], row["test"], row["detail"], row["isolation"])
        verdict = self.box.judge(files, argv, tests, limits=limits)
        if verdict.status in _KEPT:
            with self._lock:
                self._known[key] = {
                    "key": key,
                    "status": verdict.status,
                    "test": verdict.test,
                    "detail": verdict.detail,
                    "isolation": verdict.isolation,
                }
                self._changed = True
        return verdict

    def save(self) -> None:
        with self._lock:
            if self._changed:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_jsonl(self.path, self._known.values())
                self._changed = False

    def _key(self, files, argv, tests, limits: Limits) -> str:
        digest = hashlib.sha256()
        head = {
            "version": VERDICTS_VERSION,
            "isolation": self.box.isolation,
            "python": list(self._python),
            "limits": repr(limits),
            "argv": list(argv),
            "tests": [[t.stdin, t.expected] for t in tests],
        }
        digest.update(json.dumps(head, sort_keys=True).encode())
        for name in sorted(files):
            content = files[name]
            digest.update(name.encode() + b"\0")
            digest.update(content if isinstance(content, bytes) else content.encode())
            digest.update(b"\0")
        return digest.hexdigest()


def run_code_task(
    task_name: str,
    suite: Suite,
    precision: str,
    endpoint: EndpointSource,
    *,
    out_dir: Path,
    cache_dir: Path,
    limit: int | None = None,
    items: list[str] | None = None,
    evaluate: Evaluate,
) -> TaskRun:
    """Generate, execute and score ``suite.tasks[task_name]`` with the runner's ``evaluate``;
    ``endpoint`` (or the callable) is called after the sandbox is set up. The runner's preflight
    comes first (the runner's ``run`` calls it)."""
    task = suite.tasks[task_name]
    box = JudgedSandbox(
        sandbox_for(code_settings(suite, task_name)),
        cache_dir / suite.name / precision / task_name / VERDICTS_FILE,
    )
    limit = None if items is not None else limit if limit is not None else task.limit
    answerer = answerer_of(endpoint)
    client = chat_client(suite, task_name, precision, endpoint, cache_dir)  # starts on a miss
    try:
        per_item, samples, extra = evaluate(task_name, suite, client, box, limit, items=items)
    finally:  # verdicts judged before a failure or Ctrl-C are kept too
        box.save()
    if not per_item:
        raise RunError(
            f"{suite.path}: tasks.{task_name}: no problems selected; check the "
            "dataset, version and date window"
        )
    return finish_run(
        task_name,
        precision,
        per_item,
        samples,
        out_dir=out_dir,
        provenance={
            "runner": task.runner,
            "limit": limit,
            **({"selected_items": len(items)} if items is not None else {}),
            "repeats": task.repeats,
            "sandbox": box.isolation,
            "request_params": request_params(suite, task_name, 0),
            "task_config_hash": suite.task_config_hash(task_name),
            **extra,
            **answerer_provenance(answerer),
        },
    )


def code_runner(
    name: str, *, preflight: Callable[[Suite, str], None], evaluate: Evaluate
) -> Callable[..., TaskRun]:
    """A code runner's ``run(task_name, suite, precision, endpoint, *, out_dir, cache_dir,
    limit=None, items=None)`` from what differs between runners: its checks and its
    ``evaluate``."""

    def run(
        task_name: str,
        suite: Suite,
        precision: str,
        endpoint: EndpointSource,
        *,
        out_dir: Path,
        cache_dir: Path,
        limit: int | None = None,
        items: list[str] | None = None,
    ) -> TaskRun:
        preflight(suite, task_name)
        return run_code_task(
            task_name,
            suite,
            precision,
            endpoint,
            out_dir=out_dir,
            cache_dir=cache_dir,
            limit=limit,
            items=items,
            evaluate=evaluate,
        )

    run.__doc__ = f"Generate, execute and score a {name} task (the preflight first)."
    return run
