"""A cgroup v2 per run, where a writable one is delegated: the run's whole memory (every process,
its tmpfs pages, the kernel memory charged to it) is capped by ``memory.max`` and its processes
by ``pids.max``. Without one the sandbox bounds memory by rlimits and a seccomp filter instead
(:mod:`quantgate.sandbox.command` says how); :attr:`Execution.memory_bound
<quantgate.sandbox.run.Execution.memory_bound>` says which bound a run had.

``QUANTGATE_SANDBOX_CGROUP`` picks the parent cgroup:

- unset or ``auto``: the caller's own cgroup, where it already delegates the ``memory`` and
  ``pids`` controllers to children and is writable (a process can only stay in a cgroup whose
  controllers are enabled for children at the root, so in practice: root on a host without
  containers). Nothing else is tried: the sandbox never moves other processes around.
- a directory, e.g. ``/sys/fs/cgroup/ci.slice/quantgate``: a cgroup delegated to the caller (its
  ``cgroup.subtree_control`` lists memory and pids, and it is writable); an unusable one is an
  error, not a silent fallback.
- ``off``: never a cgroup.

Each run gets its own child ``quantgate-<run>``; the sandbox command joins it before it execs
(``cgroup.procs``), so the init, the program and everything they start are in it. After the run
the child is killed (``cgroup.kill``) and removed.
"""

from __future__ import annotations

import os
import time

ENV = "QUANTGATE_SANDBOX_CGROUP"
OVERHEAD_MB = 64  # memory.max = memory_total_mb + workdir_mb + this (unshare/bwrap and the init)


def delegated_parent() -> tuple[str | None, str | None]:
    """(parent cgroup directory, None), or (None, why not). Raises ValueError when
    ``QUANTGATE_SANDBOX_CGROUP`` names a directory that cannot be used."""
    setting = os.environ.get(ENV, "auto").strip() or "auto"
    if setting == "off":
        return None, f"{ENV}=off"
    if setting != "auto":
        why = _unusable(setting)
        if why:
            raise ValueError(f"{ENV}={setting}: {why}")
        return setting, None
    own = _own_cgroup()
    if own is None:
        return None, "no cgroup v2 hierarchy"
    why = _unusable(own)
    return (None, why) if why else (own, None)


def _own_cgroup() -> str | None:
    mount = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[fields.index("-") + 1] == "cgroup2":
                    mount = fields[4]
                    break
        with open("/proc/self/cgroup") as f:
            path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
    except (OSError, ValueError, IndexError):
        return None
    if mount is None or path is None:
        return None
    return os.path.normpath(mount + "/" + path.lstrip("/"))


def _unusable(path: str) -> str | None:
    try:
        with open(os.path.join(path, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
    except OSError as exc:
        return f"not a cgroup v2 directory ({exc.strerror})"
    missing = {"memory", "pids"} - enabled
    if missing:
        return f"does not delegate {' and '.join(sorted(missing))} to its children"
    if not os.access(path, os.W_OK):
        return "not writable"
    return None


class RunCgroup:
    """One run's cgroup: created with its limits, joined by the sandbox command, removed after."""

    def __init__(self, parent: str, name: str, memory_bytes: int, pids: int) -> None:
        self.path = os.path.join(parent, f"quantgate-{name}")
        os.mkdir(self.path)
        try:
            self._write("memory.max", str(memory_bytes))
            if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self._write("memory.swap.max", "0")
            self._write("pids.max", str(pids))
        except OSError:
            self.remove()
            raise

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def join(self) -> None:
        """Move the calling process in (run in the sandbox command's child before exec)."""
        self._write("cgroup.procs", str(os.getpid()))

    def oom_kills(self) -> int:
        try:
            with open(os.path.join(self.path, "memory.events")) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Kill whatever is left in it and remove it (processes take a moment to leave)."""
        kill = os.path.join(self.path, "cgroup.kill")
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
            try:
                with open(kill, "w") as f:
                    f.write("1")
            except OSError:
                pass
            time.sleep(0.02)
