"""The host side of one sandboxed run: staging the files, the run's cgroup where one is
delegated (:mod:`quantgate.sandbox.cgroup`), starting the command that
:mod:`quantgate.sandbox.command` builds, output collection with the wall timeout and the output
cap, killing the whole PID namespace, and classifying the outcome. ``quantgate.sandbox`` is the
API.

The init's own failures arrive only as an ``error`` line on its status pipe (a
:class:`SandboxError`); nothing the program prints can turn its result into one.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from quantgate.sandbox import cgroup as cgroups
from quantgate.sandbox.command import (
    ETC,
    STDIN,
    Limits,
    build_spec,
    check_limits,
    command_line,
    label,
)


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): e.g. its init could not set up mounts."""


@dataclass
class Execution:
    """One run. status: ok | timeout | runtime_error | limit_exceeded (``limit`` says which)."""

    status: str
    exit_code: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    isolation: str
    limit: str | None = None  # wall cpu memory processes open_files file_size workdir output
    wall: float = 0.0
    cpu: float | None = None
    pidns: str | None = None  # "pid:[inode]" of the run's PID namespace
    # what bounded the run's memory: "cgroup" (memory.max over the whole run), "rlimit+seccomp"
    # (RLIMIT_AS x a process budget; memfd, SysV IPC, mounts refused; workdir size + inodes) or
    # "rlimit" (an architecture without the seccomp filter)
    memory_bound: str | None = None


def run_once(
    mode: str,
    files: dict[str, str | bytes],
    argv: list[str],
    stdin: str,
    limits: Limits,
    env: dict[str, str],
    python: str,
    uid: int | None,
) -> Execution:
    """One run of ``python argv`` under ``mode`` (unshare | bwrap | none)."""
    for name in files:
        parts = Path(name).parts
        if not parts or name.startswith((".", "/")) or ".." in parts:
            raise ValueError(f"file name {name!r}: a relative path inside the working directory")
    check_limits(limits)
    try:
        parent, _ = cgroups.delegated_parent()
    except ValueError as exc:
        raise SandboxError(str(exc)) from None
    base = tempfile.mkdtemp(prefix="quantgate-sandbox-")
    staging, work = os.path.join(base, "staging"), os.path.join(base, "work")
    os.mkdir(staging, 0o700)
    if mode == "none":
        os.mkdir(work, 0o700)
    elif mode == "unshare":
        os.mkdir(os.path.join(base, "root"), 0o700)  # the empty root's mount point
    for name, data in files.items():
        Path(staging, name).parent.mkdir(parents=True, exist_ok=True)
        Path(staging, name).write_bytes(data.encode() if isinstance(data, str) else data)
    Path(staging, STDIN).write_text(stdin)
    marker = os.path.basename(base)
    group = None
    if parent is not None:
        total = (limits.memory_total_mb or limits.memory_mb) + limits.workdir_mb
        total += cgroups.OVERHEAD_MB  # the sandbox command and the init are in it too
        try:  # ... and count as processes: processes + 2
            group = cgroups.RunCgroup(parent, marker, total << 20, limits.processes + 2)
        except OSError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise SandboxError(f"cannot create the run's cgroup under {parent}: {exc}") from None
    status_r, status_w = os.pipe()
    try:
        spec = build_spec(
            mode, files, argv, staging, work, status_w, limits, env, python, uid, group is not None
        )
    except BaseException:
        os.close(status_r)
        os.close(status_w)
        shutil.rmtree(base, ignore_errors=True)
        if group is not None:
            group.remove()
        raise
    if mode == "none":  # lets _sweep find what escaped the process group (best effort)
        spec["env"]["QUANTGATE_SANDBOX_RUN"] = marker
    if mode == "bwrap":  # the /etc files bwrap binds in
        os.mkdir(os.path.join(staging, ETC))
        for name, text in spec["etc"].items():
            Path(staging, ETC, name).write_text(text)
    spec_path = os.path.join(staging, ".spec.json")
    Path(spec_path).write_text(json.dumps(spec))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            command_line(mode, spec, spec_path, python),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            preexec_fn=group.join if group is not None else None,  # noqa: PLW1509
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(status_r)
        shutil.rmtree(base, ignore_errors=True)
        if group is not None:
            group.remove()
        raise SandboxError(f"cannot start the sandbox ({mode}): {exc}") from None
    finally:
        os.close(status_w)
    oom_kills = 0
    try:
        out, err, status, killed = _collect(proc, status_r, limits, start, mode != "none")
    except BaseException:  # interrupted: leave nothing running
        _kill(proc, None)
        raise
    finally:
        os.close(status_r)
        if mode == "none":
            _sweep(marker)
        if group is not None:
            oom_kills = group.oom_kills()
            group.remove()
        shutil.rmtree(base, ignore_errors=True)
    return _execution(
        mode,
        out,
        err,
        status,
        killed,
        proc.returncode,
        limits,
        time.monotonic() - start,
        spec["memory_bound"],
        oom_kills,
    )


def _collect(proc: subprocess.Popen, status_r: int, limits: Limits, start: float, namespaced: bool):
    """Read stdout, stderr and the init's status lines until all close, the wall timeout or the
    output cap; kill the whole sandbox on either."""
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray(), status_r: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    killed, open_fds = None, set(buffers)
    deadline = start + limits.wall_seconds
    while open_fds and killed is None:
        left = deadline - time.monotonic()
        if left <= 0:
            killed = "wall"
            break
        for key, _ in sel.select(min(left, 0.5)):
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                sel.unregister(key.fd)
                open_fds.discard(key.fd)
                continue
            buffers[key.fd] += chunk
            if key.fd != status_r and len(buffers[key.fd]) > limits.output_bytes:
                killed = "output"
    sel.close()
    status = _status_lines(buffers[status_r])
    if killed is None:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed = "wall"
    if killed is not None:
        _kill(proc, status.get("pidns") if namespaced else None)
    proc.stdout.close()
    proc.stderr.close()
    cap = limits.output_bytes
    return bytes(buffers[out_fd][:cap]), bytes(buffers[err_fd][:cap]), status, killed


def _status_lines(data: bytes) -> dict:
    status: dict = {}
    for line in data.decode(errors="replace").splitlines():
        try:
            status.update(json.loads(line))
        except ValueError:
            pass
    return status


def _kill(proc: subprocess.Popen, pidns: str | None) -> None:
    """SIGKILL the sandbox's process group: unshare/bwrap take their child (the namespace's
    PID 1) with them, and the kernel kills the rest of the namespace. Wait until it is empty."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if pidns is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_in_namespace(pidns):
        time.sleep(0.02)


def _sweep(marker: str) -> None:
    """Without namespaces: kill the processes that still carry the run's marker (daemons that
    left the process group). A program can evade this by clearing its environment."""
    import psutil

    for proc in psutil.process_iter():
        try:
            if proc.environ().get("QUANTGATE_SANDBOX_RUN") == marker:
                proc.kill()
        except (psutil.Error, OSError):
            pass


def processes_in_namespace(pidns: str) -> list[int]:
    """Host pids of the live processes in the PID namespace ``pidns`` ("pid:[inode]"); a zombie
    (the dead init waiting for the host's init to reap it) holds nothing and is not counted."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != pidns:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                found.append(int(entry))
    return found


LIMIT_MESSAGES = (
    ("MemoryError", "memory"),
    ("Cannot allocate memory", "memory"),
    ("Too many open files", "open_files"),
    ("File too large", "file_size"),
    ("No space left on device", "workdir"),
    ("Resource temporarily unavailable", "processes"),
    ("can't start new thread", "processes"),
)


def _execution(
    mode: str,
    out: bytes,
    err: bytes,
    status: dict,
    killed: str | None,
    returncode: int | None,
    limits: Limits,
    wall: float,
    memory_bound: str | None = None,
    oom_kills: int = 0,
) -> Execution:
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    common = dict(
        stdout=stdout,
        stderr=stderr,
        isolation=label(mode),
        wall=wall,
        cpu=status.get("cpu"),
        pidns=None if mode == "none" else status.get("pidns"),
        memory_bound=memory_bound,
    )
    if "error" in status:  # the init's own failure, from its status pipe only
        raise SandboxError(f"the sandbox ({label(mode)}) {status['error']}")
    if killed == "wall":
        return Execution("timeout", None, limit="wall", **common)
    if killed == "output":
        return Execution("limit_exceeded", None, limit="output", **common)
    code = status.get("exit")
    if oom_kills and code in (None, -signal.SIGKILL):  # the cgroup's OOM killer
        return Execution("limit_exceeded", code, limit="memory", **common)
    if code is None:
        raise SandboxError(
            f"the sandbox ({label(mode)}) ended without a result (exit {returncode})"
        )
    if code == 0:
        return Execution("ok", 0, **common)
    if (
        code in (-signal.SIGXCPU, -signal.SIGKILL)
        and (status.get("cpu") or 0) >= limits.cpu_seconds - 0.5
    ):
        return Execution("timeout", code, limit="cpu", **common)
    if code == -signal.SIGXFSZ:
        return Execution("limit_exceeded", code, limit="file_size", **common)
    last = stderr[-2000:]
    for needle, limit in LIMIT_MESSAGES:
        if needle in last:
            return Execution("limit_exceeded", code, limit=limit, **common)
    return Execution("runtime_error", code, **common)


def tail(text: str, n: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]
