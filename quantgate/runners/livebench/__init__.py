"""LiveBench as a gated task (``runner: livebench``): LiveBench's questions answered through the
precision's server, judged by LiveBench's own per-task scorers in quantgate's loop.

    >>> from quantgate.runners.livebench import run
    >>> result = run("livebench", suite, "fp8", endpoint,
    ...              out_dir=Path("out"), cache_dir=Path("cache"))            # doctest: +SKIP

- :mod:`.run`: questions of a release, the run (``run``, ``run_livebench`` with a scorer of
  one's own), the statistics in the provenance;
- :mod:`.answers`: the cache tree and ``model_answer/<model>.jsonl`` in LiveBench's format;
- :mod:`.judge`: routing each question to its scorer, ``model_judgment/`` files;
- :mod:`.preflight`: before generating, whether the selected scorers can run here.

Without ``livebench`` installed the run raises :class:`LiveBenchNotInstalled` (a
:class:`~quantgate.runs.NotRunnable`: the case skips); a missing scorer dependency raises
:class:`PreflightError` and questions or judgments that cannot be used :class:`LiveBenchError`
(both :class:`~quantgate.runs.RunError`: the case fails). The function ``run`` and the
submodule ``run`` share a name: here ``run`` is the function; the submodule is imported with
``from quantgate.runners.livebench.run import ...``.
"""

from quantgate.runners.livebench.answers import model_name, tree_dir
from quantgate.runners.livebench.judge import LiveBenchScorer, Scorer, UnsupportedTask, route
from quantgate.runners.livebench.preflight import (
    INSTALL,
    LIVEBENCH_COMMIT,
    LiveBenchNotInstalled,
    PreflightError,
    livebench_installed,
    require_livebench,
)
from quantgate.runners.livebench.run import (
    CATEGORIES,
    LiveBenchError,
    LiveBenchEvalError,
    in_release,
    load_questions,
    run,
    run_livebench,
    select_questions,
)

__all__ = [
    "CATEGORIES",
    "INSTALL",
    "LIVEBENCH_COMMIT",
    "LiveBenchError",
    "LiveBenchEvalError",
    "LiveBenchNotInstalled",
    "LiveBenchScorer",
    "PreflightError",
    "Scorer",
    "UnsupportedTask",
    "in_release",
    "livebench_installed",
    "load_questions",
    "model_name",
    "require_livebench",
    "route",
    "run",
    "run_livebench",
    "select_questions",
    "tree_dir",
]
