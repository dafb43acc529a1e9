"""The runners: one function per benchmark family, all of the same shape.

    run(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit=None) -> TaskRun

``endpoint`` is a :class:`~quantgate.runs.Endpoint` or a zero-argument callable returning one
(:data:`EndpointSource`): a runner calls it (:func:`live_endpoint`) only after its checks, so no
server starts for a case that skips, and LiveBench only when answers must be generated.

- :mod:`.registry`: ``RUNNERS`` (runner name -> run) and ``run_case``, which picks the runner of a
  suite task and lays out ``<root>/runs/...`` and ``<root>/cache/...``;
- :mod:`.lmeval`: lm-eval in-process;
- :mod:`.livebench`: ``run`` (questions, answers, judgments), ``answers``, ``judge``,
  ``preflight``;
- :mod:`.code`: ``common`` (client, sandbox, ``run_code_task``), ``livecodebench``, ``scicode``.

Errors: :class:`~quantgate.runs.NotRunnable` (the case skips) and
:class:`~quantgate.runs.RunError` (it fails), nothing else to translate.
"""

from __future__ import annotations

from collections.abc import Callable

from quantgate.runs import Endpoint

EndpointSource = Endpoint | Callable[[], Endpoint]


def live_endpoint(endpoint: EndpointSource) -> Endpoint:
    """The endpoint itself, or what the callable returns (e.g. after starting the server)."""
    return endpoint() if callable(endpoint) else endpoint
