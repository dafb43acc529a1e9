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
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quantgate.config import Suite
from quantgate.jsonl import atomic_write_text
from quantgate.runners import EndpointSource, livebench, lmeval
from quantgate.runners.code import livecodebench, scicode
from quantgate.runs import TaskRun

Runner = Callable[..., TaskRun]  # run(task_name, suite, precision, endpoint, *, out_dir,
#                                      cache_dir, limit=None) -> TaskRun

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
) -> TaskRun:
    """Run ``suite.tasks[task_name]`` at ``precision`` with its runner, in ``root``'s layout."""
    runner = suite.tasks[task_name].runner
    if runner not in RUNNERS:
        raise ValueError(
            f"{suite.path}: tasks.{task_name}: runner {runner!r} is not one of {', '.join(RUNNERS)}"
        )
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
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RUN_FILE, run.to_json())
    return run


RUN_FILE = "run.json"


def run_dir(root: Path, suite: str, precision: str, task: str) -> Path:
    """Where a case's samples.jsonl and run.json live."""
    return Path(root) / "runs" / suite / precision / task
