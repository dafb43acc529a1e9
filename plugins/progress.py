"""Progress of long generations on the terminal: :mod:`quantgate.progress` measures, this plugin
installs the sink that writes past pytest's output capture.

- a terminal: one line per case refreshed in place (at most twice a second);
- elsewhere (CI logs, pipes): a plain line every 30 s and when the case's generation ends;
- pytest-xdist workers: plain lines prefixed with the worker id, on the worker's stderr (which
  execnet leaves connected to the controller's);
- ``-q``, or a run that deselects the accuracy cases (the project's own tests): nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from plugins.cases import selects_accuracy


def make_sink(config: pytest.Config):
    """The sink for this process, or None (quiet)."""
    from quantgate.progress import Sink

    if config.getoption("verbose") < 0 or not selects_accuracy(config):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        return Sink(lambda line, final: _worker_line(worker, line))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    writer = config.get_terminal_writer()
    capman = config.pluginmanager.getplugin("capturemanager")
    interactive = bool(reporter.isatty) and os.environ.get("TERM") != "dumb"

    def write(line: str, final: bool) -> None:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            if interactive:
                width = max(20, writer.fullwidth - 1)
                writer.write("\r" + line[:width].ljust(width))
                if final:
                    writer.line()
            else:
                writer.line(line)
            writer.flush()

    return Sink(write, interactive=interactive)


def _worker_line(worker: str, line: str) -> None:
    sys.__stderr__.write(f"[{worker}] {line}\n")
    sys.__stderr__.flush()


@pytest.hookimpl(trylast=True)  # after the terminal reporter is registered
def pytest_configure(config: pytest.Config) -> None:
    from quantgate.progress import set_sink

    set_sink(make_sink(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    from quantgate.progress import set_sink

    set_sink(None)
