"""Runner name -> run function, and the one place that lays out a case's directories.

    >>> run = run_case(suite, "math500", "fp8", lambda: start_server(...),
    ...                root=Path(".quantgate"))                                # doctest: +SKIP

``run_case`` picks the runner of ``suite.tasks[task_name].runner`` (a name of
:data:`quantgate.config.RUNNERS`) and calls it with

- ``out_dir = root / "runs" / <suite> / <precision> / <task>`` (samples.jsonl, livebench.json,
  and ``run.json``: the TaskRun, written here once the runner returns, so a report can be
  rebuilt from stored runs without a server);
- ``cache_dir = root / "cache" / CACHE_DIRS[runner]`` (``lmeval``, ``livebench``, or ``code``
  for both code runners), under which each runner keys its own cache by suite, precision, task.

``endpoint`` is an :class:`~quantgate.runs.Endpoint` or a zero-argument callable returning one;
the runners call it only after their checks (LiveBench only when answers must be generated).

``items`` (a list of item ids, in order) runs exactly those items of the task instead of its
selection (``limit`` and the task's own limit do not apply; the two arguments exclude each
other): lm-eval doc ids (``<doc_id>``, or ``<subtask>/<doc_id>`` in a group), LiveBench question
ids, LiveCodeBench / SciCode problem ids (SciCode step ids with ``code.items: steps``). The
generation caches answer the items already generated, so running a longer list later
(:mod:`quantgate.sequential`'s chunks) generates only the new ones. An id the task does not
have, or one the runner returned no score for, is a :class:`~quantgate.runs.RunError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from quantgate.config import Suite
from quantgate.jsonl import atomic_write_text
from quantgate.runners import EndpointSource, livebench, lmeval
from quantgate.runners.code import livecodebench, scicode
from quantgate.runs import RunError, TaskRun

Runner = Callable[..., TaskRun]  # run(task_name, suite, precision, endpoint, *, out_dir,
#                                      cache_dir, limit=None, items=None) -> TaskRun

RUNNERS: dict[str, Runner] = {
    "lmeval": lmeval.run,
    "livebench": livebench.run,
    "livecodebench": livecodebench.run,
    "scicode": scicode.run,
}
CACHE_DIRS: dict[str, str] = {
    "lmeval": "lmeval",
    "livebench": "livebench",
    "livecodebench": "code",
    "scicode": "code",
}


def run_case(
    suite: Suite,
    task_name: str,
    precision: str,
    endpoint: EndpointSource,
    *,
    root: Path,
    limit: int | None = None,
    items: Sequence[str] | None = None,
) -> TaskRun:
    """Run ``suite.tasks[task_name]`` at ``precision`` with its runner, in ``root``'s layout
    (``items``: exactly these item ids, see the module docstring)."""
    runner = suite.tasks[task_name].runner
    if runner not in RUNNERS:
        raise ValueError(
            f"{suite.path}: tasks.{task_name}: runner {runner!r} is not one of {', '.join(RUNNERS)}"
        )
    if items is not None and limit is not None:
        raise ValueError("run_case: items and limit exclude each other")
    items = check_items(items, task_name)
    root = Path(root)
    out_dir = run_dir(root, suite.name, precision, task_name)
    run = RUNNERS[runner](
        task_name,
        suite,
        precision,
        endpoint,
        out_dir=out_dir,
        cache_dir=root / "cache" / CACHE_DIRS[runner],
        limit=limit,
        items=items,
    )
    if items is not None:
        asked = set(items)
        missing = [i for i in items if i not in run.scores]
        extra = [i for i in run.scores if i not in asked]
        if missing or extra:
            raise RunError(
                f"{suite.path}: tasks.{task_name}: the runner did not score exactly the items "
                f"asked for: {_listing(missing, 'missing')}{_listing(extra, 'not asked for')}"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RUN_FILE, run.to_json())
    return run


RUN_FILE = "run.json"


def check_items(items: Sequence[str] | None, task_name: str) -> list[str] | None:
    """``items`` as a list of distinct ids (text), or None; an empty list or a repeated id is a
    RunError."""
    if items is None:
        return None
    ids = [str(i) for i in items]
    if not ids:
        raise RunError(f"tasks.{task_name}: items= is empty: nothing to run")
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise RunError(f"tasks.{task_name}: items= repeats {', '.join(repeated[:5])}")
    return ids


def _listing(ids: list[str], what: str, shown: int = 5) -> str:
    if not ids:
        return ""
    more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
    return f"{len(ids)} {what}: {', '.join(ids[:shown])}{more}; "


def run_dir(root: Path, suite: str, precision: str, task: str) -> Path:
    """Where a case's samples.jsonl and run.json live."""
    return Path(root) / "runs" / suite / precision / task
