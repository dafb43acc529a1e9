"""What one sandboxed run is made of, before anything starts: the command line (unshare / bwrap /
none), the program's environment (built from scratch, credentials scrubbed) and the spec the init
(``_init.py``) reads, with its mount plan (the directories to hide and the ones to bind back) and
the resource limits. :mod:`quantgate.sandbox.run` starts it.
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

INIT = Path(__file__).resolve().parent / "_init.py"
STDIN = ".stdin"  # the staged file the init opens as the program's stdin
# Started as root, each run gets its own unprivileged uid from this range (no account needed):
# RLIMIT_NPROC then counts that run's processes only, and runs cannot signal each other.
UID_RANGE = (1_000_000, 2_000_000)
SECRET = re.compile(
    r"(^HF_TOKEN$|^HUGGING_FACE_HUB_TOKEN$|_KEY$|_TOKEN$|_SECRET$|PASSWORD|"
    r"CREDENTIAL|^(http|https|ftp|all|no)_proxy$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 2048  # address space per process
    processes: int = 32  # RLIMIT_NPROC (threads count)
    open_files: int = 64
    file_size_mb: int = 16
    output_bytes: int = 1 << 20  # per stream; more is killed as "limit_exceeded: output"
    workdir_mb: int = 64


def scrub_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without credentials (HF_TOKEN, *_KEY, *_TOKEN, *_SECRET, passwords) and proxies."""
    return {k: v for k, v in env.items() if not SECRET.search(k)}


def label(mode: str) -> str:
    if mode == "unshare":
        return "unshare+setuid" if os.geteuid() == 0 else "unshare+userns"
    return mode


def build_spec(
    mode: str,
    files: dict[str, str | bytes],
    argv: list[str],
    staging: str,
    work: str,
    status_fd: int,
    limits: Limits,
    env: dict[str, str],
    python: str,
    uid: int | None,
) -> dict:
    """The spec the init reads: ids, staged files, mount plan, rlimits, argv and environment."""
    root = os.geteuid() == 0
    # unshare as root: the init drops to ``uid``; in a user namespace (unshare as a user, bwrap)
    # the program keeps the caller's uid, without capabilities
    if uid is None:
        uid = random.randrange(*UID_RANGE)
    ids = (uid if root else 0) if mode == "unshare" else None
    return {
        "mounts": mode == "unshare",
        "setuid": mode == "unshare" and root,
        "uid": ids,
        "gid": ids,
        "staging": staging,
        "work": work,
        "files": sorted(files),
        "stdin": STDIN,
        "hide": _hidden(tempfile.gettempdir()),
        "keep": _keep_paths(python),
        "work_mb": limits.workdir_mb,
        "status_fd": status_fd,
        "limits": {
            "cpu": limits.cpu_seconds,
            "as": limits.memory_mb << 20,
            "nproc": limits.processes,
            "nofile": limits.open_files,
            "fsize": limits.file_size_mb << 20,
            "core": 0,
        },
        "argv": [python, "-s", "-B", *argv],
        "env": _program_env(work, python, env),
    }


def _program_env(work: str, python: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": work,
        "MPLCONFIGDIR": work,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }
    if python == sys.executable:  # the host's packages, also when they come from PYTHONPATH
        env["PYTHONPATH"] = os.pathsep.join(_site_packages())
    return {**env, **scrub_env(extra)}


def _site_packages() -> list[str]:
    return [p for p in sys.path if p and os.path.isdir(p) and "-packages" in p]


def _keep_paths(python: str) -> list[str]:
    """What the program needs to read under the hidden directories: the Python installation."""
    paths = {
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(python)),
        str(INIT.parent),
    }
    paths |= set(_site_packages())
    return _outermost(os.path.realpath(p) for p in paths)


def _outermost(paths) -> list[str]:
    """Sorted, without duplicates and without paths inside another one of the list."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == o or path.startswith(o.rstrip("/") + "/") for o in out):
            out.append(path)
    return out


def _hidden(staging_root: str) -> list[str]:
    """Directories covered by an empty tmpfs: temporary files, sockets, homes (never / itself)."""
    paths = [
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/run",
        "/root",
        "/home",
        os.path.realpath(os.path.expanduser("~")),
        os.path.realpath(staging_root),
    ]
    return _outermost(p for p in paths if p.rstrip("/"))


def command_line(mode: str, spec: dict, spec_path: str, python: str) -> list[str]:
    """The argv that starts the init under ``mode``: in unshare's or bwrap's namespaces, or as is
    (``none``)."""
    init = [python, "-I", "-S", str(INIT), spec_path]
    if mode == "unshare":
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        return [
            "unshare",
            *user,
            "--mount",
            "--net",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            *init,
        ]
    if mode == "bwrap":
        cmd = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        hidden = [h for h in spec["hide"] if os.path.isdir(h) and not os.path.islink(h)]
        for path in hidden:
            cmd += ["--tmpfs", path]
        for path in spec["keep"]:
            if any(path.startswith(h + "/") for h in hidden):
                cmd += ["--ro-bind", path, path]
        cmd += [
            "--ro-bind",
            spec["staging"],
            spec["staging"],
            "--size",
            str(spec["work_mb"] << 20),
            "--perms",
            "0700",
            "--tmpfs",
            spec["work"],
        ]
        for path in hidden:
            cmd += ["--remount-ro", path]
        return [*cmd, "--chdir", "/", "--clearenv", "--", *init]
    return init
