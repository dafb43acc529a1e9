"""One managed child process in its own process group: start, poll, stop, leave nothing behind.

Knows nothing about HTTP; :mod:`quantgate.serving.servers` adds readiness on top. POSIX only (Linux
for the parent-death signal).

Cleanup model:

* the child starts with ``start_new_session=True``, so it and everything it forks share a process
  group whose id is the child's pid; teardown signals the whole group (``killpg``), never processes
  by name;
* on Linux the child gets ``PR_SET_PDEATHSIG`` (SIGTERM by default): if the process that started it
  dies, even by SIGKILL, the kernel signals the child. The signal fires when the *thread* that
  started the child exits, so start servers from the main thread or a thread that outlives them;
* descendants are recorded with psutil while the child runs (a daemon thread, and on every
  ``poll``), so one that called ``setsid`` to leave the group is still signalled at teardown. A
  process that both leaves the group and is orphaned before it is ever seen cannot be found (that
  would need cgroups).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

__all__ = ["ManagedProcess", "read_tail"]

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:  # loaded in the parent: the child only calls it (no dlopen between fork and exec)
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def read_tail(path: str | os.PathLike, max_bytes: int = 3072) -> str:
    """The last ``max_bytes`` of a (log) file as text; '' if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ManagedProcess:
    """``subprocess.Popen`` in a new session, output to ``log_path``, torn down as a group.

    ``stop()`` is idempotent; it sends ``SIGTERM`` to the group and to recorded descendants outside
    it, waits up to ``stop_timeout`` seconds, then sends ``SIGKILL`` to whatever is left.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: str | os.PathLike,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        stop_timeout: float = 30.0,
        death_signal: int | None = signal.SIGTERM,
        track_interval: float | None = 1.0,
    ) -> None:
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.death_signal = death_signal
        self.track_interval = track_interval
        self.popen: subprocess.Popen | None = None
        self.escalated = False  # True if stop() had to send SIGKILL
        self._descendants: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tracker: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        if self.popen is not None:
            raise RuntimeError("process already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"# quantgate: {subprocess.list2cmdline(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=self._preexec() if self.death_signal and _PRCTL else None,
            )
        self.record_descendants()
        if self.track_interval:
            self._tracker = threading.Thread(
                target=self._track, name=f"track-{self.pid}", daemon=True
            )
            self._tracker.start()
        return self

    def _preexec(self):
        parent, sig, prctl = os.getpid(), int(self.death_signal), _PRCTL

        def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
            prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), sig)

        return preexec

    def _track(self) -> None:
        while not self._stopping.wait(self.track_interval):
            if self.poll() is not None:
                return

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError("process not started")
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.returncode

    def poll(self) -> int | None:
        """The exit code, or None while running; also records current descendants."""
        if self.popen is None:
            raise RuntimeError("process not started")
        rc = self.popen.poll()
        if rc is None:
            self.record_descendants()
        return rc

    def record_descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            found = []
        with self._lock:
            for p in found:
                self._descendants.setdefault(p.pid, p)
            return list(self._descendants.values())

    def log_tail(self, max_bytes: int = 3072) -> str:
        return read_tail(self.log_path, max_bytes)

    # -- teardown ----------------------------------------------------------------------------------
    def _signal_all(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        with self._lock:
            extra = list(self._descendants.values())
        for p in extra:  # psutil refuses to signal a pid that was reused by another process
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    def _group_alive(self) -> bool:
        """True while a non-zombie process is in the group (zombies may never be reaped in
        containers)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == self.pid and _alive(p):
                    return True
            except (OSError, psutil.Error):
                continue
        return False

    def _leftovers(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is None:
            return True
        with self._lock:
            extra = list(self._descendants.values())
        return any(_alive(p) for p in extra) or self._group_alive()

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not self._leftovers():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> int | None:
        """Terminate the group and recorded descendants; returns the exit code (negative: signal).

        A second KeyboardInterrupt (or any exception) during the graceful wait escalates to SIGKILL
        before propagating.
        """
        if self.popen is None:
            return None
        self._stopping.set()
        timeout = self.stop_timeout if timeout is None else timeout
        try:
            if self.popen.poll() is None:
                self.record_descendants()
            self._signal_all(signal.SIGTERM)
            if not self._wait_gone(timeout):
                self.escalated = True
                self._signal_all(signal.SIGKILL)
                self._wait_gone(5.0)
        except BaseException:
            self.escalated = True
            self._signal_all(signal.SIGKILL)
            raise
        finally:
            try:
                self.popen.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if self._tracker is not None and self._tracker is not threading.current_thread():
                self._tracker.join(timeout=2.0)
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
