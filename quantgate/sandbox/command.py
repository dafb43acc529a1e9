"""What one sandboxed run is made of, before anything starts: the command line (unshare / bwrap /
none), the program's environment (built from scratch, credentials scrubbed) and the spec the init
(``_init.py``) reads, with its filesystem plan (what the empty root holds: the interpreter's
prefixes and site-packages and the system libraries, read-only), the privileges to drop, the
seccomp filter and the resource limits. :mod:`quantgate.sandbox.run` starts it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INIT = Path(__file__).resolve().parent / "_init.py"
BWRAP_INIT = "/.quantgate-sandbox-init.py"  # where bwrap binds the init (nothing else of ours)
STDIN = ".stdin"  # the staged file the init opens as the program's stdin
ETC = ".etc"  # the staged /etc files (bwrap binds them)
# Started as root, each run gets its own unprivileged uid from this range (no account needed):
# RLIMIT_NPROC then counts that run's processes only, and runs cannot signal each other.
UID_RANGE = (1_000_000, 2_000_000)
SECCOMP_ARCHES = ("x86_64", "aarch64")
# The system's shared libraries (the interpreter's and extension modules' dependencies, the
# dynamic loader) and the loader's cache: bound in read-only where they exist.
SYSTEM_PATHS = (
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/etc/ld.so.cache",
)
SECRET = re.compile(
    r"(^HF_TOKEN$|^HUGGING_FACE_HUB_TOKEN$|_KEY$|_TOKEN$|_SECRET$|PASSWORD|"
    r"CREDENTIAL|^(http|https|ftp|all|no)_proxy$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Limits:
    """A run's limits. ``memory_mb`` is the address space of each process (RLIMIT_AS);
    ``memory_total_mb`` (default: ``memory_mb``) is the whole run's memory. With a cgroup
    (:mod:`quantgate.sandbox.cgroup`) that total plus the working directory is ``memory.max``;
    without one, at most ``memory_total_mb // memory_mb`` processes run at once, so processes x
    RLIMIT_AS stays within the total (one process: the seccomp filter refuses new processes and
    threads stay allowed up to ``processes``; more: RLIMIT_NPROC is that number, threads
    included)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 2048  # address space per process
    processes: int = 32  # RLIMIT_NPROC (threads count); pids.max under a cgroup
    open_files: int = 64
    file_size_mb: int = 16
    output_bytes: int = 1 << 20  # per stream; more is killed as "limit_exceeded: output"
    workdir_mb: int = 64  # the working directory's tmpfs: size
    workdir_inodes: int = 4096  # ... and files + directories (each costs kernel memory)
    memory_total_mb: int | None = None  # the whole run; None: memory_mb (one process)


def check_limits(limits: Limits) -> None:
    """Refuse limits the kernel would read as "unlimited" (a tmpfs size or inode count of 0)
    or that leave no room for a process."""
    for name in ("memory_mb", "processes", "open_files", "workdir_mb", "workdir_inodes"):
        if getattr(limits, name) < 1:
            raise ValueError(f"Limits.{name} = {getattr(limits, name)}: must be at least 1")
    total = limits.memory_total_mb
    if total is not None and total < limits.memory_mb:
        raise ValueError(
            f"Limits.memory_total_mb = {total} is less than memory_mb = {limits.memory_mb}"
        )


def process_budget(limits: Limits) -> int:
    """How many processes may run at once without a cgroup: processes x RLIMIT_AS <= total."""
    total = limits.memory_total_mb or limits.memory_mb
    return max(1, min(limits.processes, total // limits.memory_mb))


def seccomp_arch() -> str | None:
    """The architecture the init's seccomp filter knows (x86_64, aarch64), else None."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return machine if machine in SECCOMP_ARCHES else None


def memory_bound(cgroup: bool) -> str:
    """What bounds a run's memory: ``cgroup`` (memory.max over the whole run) or
    ``rlimit+seccomp`` (RLIMIT_AS x a process budget, no memfd/SysV IPC/mounts/namespaces, the
    workdir's size and inodes); ``rlimit`` where no seccomp filter is known for the
    architecture."""
    if cgroup:
        return "cgroup"
    return "rlimit+seccomp" if seccomp_arch() else "rlimit"


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
    cgroup: bool = False,
) -> dict:
    """The spec the init reads: ids, staged files, filesystem plan, privileges, seccomp,
    rlimits, argv and environment. ``cgroup``: the run is in its own cgroup (the memory bound)."""
    check_limits(limits)
    root = os.geteuid() == 0
    # unshare as root: the init drops to ``uid``; in a user namespace (unshare as a user, bwrap)
    # the program is root of that namespace (the caller's uid outside), without capabilities
    if uid is None:
        uid = random.randrange(*UID_RANGE)
    elif not 0 < uid < 2**32 - 1:  # 0 is root, -1 / 2**32-1 means "leave the uid as it is"
        raise ValueError(f"uid {uid}: must be an unprivileged uid (1 .. 2**32-2)")
    ids = (uid if root else 0) if mode == "unshare" else None
    links, binds = filesystem_plan(python)
    arch = seccomp_arch()
    budget = process_budget(limits)
    # RLIMIT_NPROC does not apply to (global) root: bwrap and none started by root run the
    # program as root, so without a cgroup it is one process there, whatever the budget
    as_root = root and mode != "unshare"
    single = not cgroup and arch is not None and (budget == 1 or as_root)
    return {
        # unshare: the init builds the empty root; bwrap builds it, the init mounts the workdir
        "mounts": {"unshare": "root", "bwrap": "work"}.get(mode),
        "setuid": mode == "unshare" and root,
        "uid": ids,
        "gid": ids,
        "staging": staging,
        "work": work,
        "root": os.path.join(os.path.dirname(work), "root"),  # the empty root's mount point
        "links": links,
        "binds": binds,
        "files": sorted(files),
        "stdin": STDIN,
        "work_mb": limits.workdir_mb,
        "work_inodes": limits.workdir_inodes,
        "status_fd": status_fd,
        "etc": etc_files(ids if ids is not None else 0 if mode == "bwrap" else os.getuid(), work),
        # bwrap and unshare can empty the bounding set; without namespaces only root can
        "drop_bounding": mode != "none" or root,
        "seccomp": {"arch": arch, "single_process": single} if arch else None,
        "memory_bound": memory_bound(cgroup),
        "limits": {
            "cpu": limits.cpu_seconds,
            "as": limits.memory_mb << 20,
            "nproc": limits.processes if cgroup or single else budget,
            "nofile": limits.open_files,
            "fsize": limits.file_size_mb << 20,
            "core": 0,
            "msgqueue": 0,
        },
        "argv": [python, "-s", "-B", *argv],
        "env": _program_env(work, python, env),
    }


def etc_files(uid: int, work: str) -> dict[str, str]:
    """The sandbox's whole /etc besides the loader cache: its user (and root), localhost."""
    users = [] if uid == 0 else ["root:x:0:0:root:/:/nonexistent"]
    groups = [] if uid == 0 else ["root:x:0:"]
    return {
        "passwd": "\n".join([*users, f"sandbox:x:{uid}:{uid}:sandbox:{work}:/nonexistent"]) + "\n",
        "group": "\n".join([*groups, f"sandbox:x:{uid}:"]) + "\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
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


def filesystem_plan(python: str) -> tuple[list[list[str]], list[str]]:
    """What the empty root holds besides /dev, /proc, a generated /etc and the working
    directory: (symlinks as [path, target], directories and files bound in read-only). The
    interpreter's prefixes and site-packages, and the system's libraries; every symlink on the
    way to them is recreated as it is (/lib -> usr/lib, a venv's bin/python -> the base
    interpreter), and what it points to is bound instead. Never ``/`` itself; never the parent
    of a prefix (a venv inside a checkout brings the venv, not the checkout)."""
    prefixes, site = _interpreter(python)
    links: dict[str, str] = {}
    binds: set[str] = set()
    for path in (*prefixes, *site, os.path.dirname(os.path.abspath(python)), python):
        _resolve_into(path, links, binds)
    for path in SYSTEM_PATHS:
        _resolve_into(path, links, binds)
    outer = _outermost(binds)
    if "/" in outer:
        raise ValueError(f"{python}: its prefix is /, which an allow-list sandbox cannot bind")

    def inside(path: str) -> bool:
        return any(path.startswith(b.rstrip("/") + "/") for b in outer)

    return [[p, t] for p, t in sorted(links.items()) if not inside(p)], outer


def _resolve_into(path: str, links: dict[str, str], binds: set[str], depth: int = 0) -> None:
    """Walk ``path`` from /: record each symlink met and follow it; bind the real path found."""
    if depth > 40:
        return
    parts = [p for p in os.path.normpath(os.path.abspath(path)).split("/") if p]
    current = ""
    for index, part in enumerate(parts):
        step = f"{current}/{part}"
        if os.path.islink(step):
            target = os.readlink(step)
            links[step] = target
            resolved = os.path.normpath(os.path.join(current or "/", target))
            rest = parts[index + 1 :]
            _resolve_into(os.path.join(resolved, *rest), links, binds, depth + 1)
            return
        if not os.path.lexists(step):
            return
        current = step
    binds.add(current or "/")


def _interpreter(python: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sys.prefix, base_prefix, exec_prefix, base_exec_prefix) and site-packages of ``python``:
    this process's own, or asked of the other interpreter."""
    if python == sys.executable:
        prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
        return prefixes, tuple(_site_packages())
    return _ask_interpreter(python)


@functools.lru_cache(maxsize=16)
def _ask_interpreter(python: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    code = (
        "import json, sys; print(json.dumps([[sys.prefix, sys.base_prefix, sys.exec_prefix, "
        "sys.base_exec_prefix], [p for p in sys.path if p.endswith('-packages')]]))"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        prefixes, site = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return (), ()  # the sandbox's probe then says that the interpreter does not start
    return tuple(prefixes), tuple(site)


def _outermost(paths) -> list[str]:
    """Sorted, without duplicates and without paths inside another one of the list."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == o or path.startswith(o.rstrip("/") + "/") for o in out):
            out.append(path)
    return out


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
        # bwrap starts from an empty tmpfs root: the same allow-list as the init builds
        cmd = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--uid",  # root of its user namespace (as unshare --map-root-user): no second
            "0",  # user namespace, so the init may mount in the sandbox's mount namespace
            "--gid",
            "0",
            "--cap-drop",  # the init mounts the workdir (size + inodes), then drops them all
            "ALL",
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--cap-add",
            "CAP_SETPCAP",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        for path, target in spec["links"]:
            if os.path.dirname(path) != "/":
                cmd += ["--dir", os.path.dirname(path)]
            cmd += ["--symlink", target, path]
        for path in spec["binds"]:
            cmd += ["--ro-bind", path, path]
        for name in sorted(spec["etc"]):  # staged by quantgate.sandbox.run
            cmd += ["--ro-bind", os.path.join(spec["staging"], ETC, name), f"/etc/{name}"]
        cmd += [
            "--ro-bind",
            str(INIT),
            BWRAP_INIT,
            "--ro-bind",
            spec["staging"],
            spec["staging"],
            "--dir",
            spec["work"],
            "--remount-ro",
            "/",
            "--remount-ro",
            "/dev",
        ]
        return [*cmd, "--chdir", "/", "--clearenv", "--", python, "-I", "-S", BWRAP_INIT, spec_path]
    return init
