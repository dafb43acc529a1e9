"""The runners: one function per benchmark family, all of the same shape.

    run(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit=None) -> TaskRun

``endpoint`` is a :class:`~quantgate.runs.Endpoint` or a zero-argument callable returning one
(:data:`EndpointSource`): a runner calls it (:func:`live_endpoint`) only after its checks, so no
server starts for a case that skips, and LiveBench only when answers must be generated. Every
generation cache is keyed by :func:`answerer_of` the source (engine, version, checkpoint and
revision of a managed server; URL and served model id of an external one), so answers of one
server are never graded as another's; a :class:`~quantgate.runs.PendingEndpoint` says its
answerer without starting anything.

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

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quantgate.runs import Endpoint, PendingEndpoint

if TYPE_CHECKING:
    from quantgate.config import Suite

EndpointSource = Endpoint | Callable[[], Endpoint]


def live_endpoint(endpoint: EndpointSource) -> Endpoint:
    """The endpoint itself, or what the callable returns (e.g. after starting the server)."""
    return endpoint() if callable(endpoint) else endpoint


def answerer_of(endpoint: EndpointSource) -> dict[str, str | None]:
    """What will answer: a pending endpoint's declared answerer, else the live endpoint's (a bare
    callable is called, i.e. its server started, to find out)."""
    if isinstance(endpoint, PendingEndpoint):
        return endpoint.answerer
    return live_endpoint(endpoint).answerer()


def generation_key(
    suite: Suite, precision: str, answerer: dict[str, Any] | None, **settings: Any
) -> str:
    """The key of a generation cache folder (lm-eval's, LiveBench's): 16 hex digits of the
    sha256 of the suite's ``precisions`` entry, what answers (:func:`answerer_of`) and the
    runner's other ``settings`` that decide the generations, as sorted JSON."""
    payload = {
        "precision": suite.precisions[precision].model_dump(mode="json"),
        "answerer": answerer,
        **settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
