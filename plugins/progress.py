"""Progress of long generations on the terminal: :mod:`quantgate.progress` measures, this plugin
installs the sink that writes past pytest's output capture.

- a terminal: one line per case refreshed in place (at most twice a second);
- elsewhere (CI logs, pipes): a plain line every 30 s and when the case's generation ends;
- pytest-xdist workers: plain lines prefixed with the worker id, on the worker's stderr (which
  execnet leaves connected to the controller's);
- ``-q``, or a run that deselects the accuracy cases (the project's own tests): nothing.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from plugins.cases import selects_accuracy


def make_sink(config: pytest.Config):
    """The sink for this process, or None (quiet). Lines go to a duplicate of the terminal's
    file descriptor taken here, while pytest's capture is suspended (``pytest_configure``), so
    writing never toggles the capture: the timer thread of a long run (quantgate.progress) may
    write while a test runs on the main thread."""
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
    try:
        out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", errors="replace")
    except (OSError, ValueError):  # no file descriptor behind stdout
        return None
    config.add_cleanup(out.close)
    interactive = bool(reporter.isatty) and os.environ.get("TERM") != "dumb"
    lock = threading.Lock()  # the main thread and a timer thread may both write

    def write(line: str, final: bool) -> None:
        with lock:
            if interactive:
                width = max(20, writer.fullwidth - 1)
                out.write("\r" + line[:width].ljust(width) + ("\n" if final else ""))
            else:
                out.write(line + "\n")
            out.flush()

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
