"""The code runners: generations through the precision's server, every model-written program in
the sandbox (:mod:`quantgate.sandbox`), per-item scores for the gate.

- :mod:`.livecodebench` (``runner: livecodebench``) and :mod:`.scicode` (``runner: scicode``):
  each has ``preflight(suite, task_name)`` (before any server starts), ``evaluate`` and
  ``run(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit=None)``;
- :mod:`.common`: what they share (chat client, request parameters, sandbox, the common
  preflight, ``run_code_task(..., evaluate=...)``); it imports neither runner.

A missing data file raises :class:`MissingData` (a :class:`~quantgate.runs.NotRunnable`: the
case skips); no working isolation raises :class:`~quantgate.sandbox.SandboxUnavailable` (the
case fails).
"""

from quantgate.runners.code.common import MissingData

__all__ = ["MissingData"]
