"""Run one untrusted Python program in a sandbox: model-written code never runs on the host as is.

    box = Sandbox(limits=Limits(wall_seconds=6))
    run = box.run({"main.py": "print(int(input()) * 2)"}, ["main.py"], stdin="21\\n")
    run.status, run.stdout, run.isolation        # ('ok', '42\\n', 'unshare+setuid')
    box.judge({"main.py": src}, ["main.py"], [IOTest("1\\n", "2")]).status    # 'passed'

Isolation (``isolation=``, or the environment variable ``QUANTGATE_SANDBOX``; default ``auto``):

- ``unshare`` (util-linux, on every Debian): new mount, network, PID, IPC and UTS namespaces.
  Started as real root, the init (``_init.py``) sets up the filesystem with root's rights
  and then drops for good to an unprivileged uid of its own (a fresh one per run, so the
  process limit counts that run only and runs cannot signal each other); started as a user, a
  user namespace gives it the same rights over its own namespaces only (``unshare --user
  --map-root-user``; the program is "root" of that user namespace, without capabilities).
- ``bwrap`` (bubblewrap, where installed): the same root made by bwrap (the init only adds the
  working directory); the fallback for users whose kernel lets bwrap, but not unshare, create
  user namespaces (Ubuntu's AppArmor rule). Started by root it runs the program as root of its
  user namespace, which is global root to RLIMIT_NPROC: there, without a cgroup, the program is
  one process (threads allowed).
- ``none``: no namespaces, only rlimits, the seccomp filter and a process-group kill. Never
  chosen automatically: with no isolation available the sandbox raises
  :class:`SandboxUnavailable` instead.

What is guaranteed in the namespaces (``unshare`` and ``bwrap``):

- Filesystem: an allow-list. The root is an empty, read-only tmpfs holding only the interpreter's
  prefixes (``sys.prefix``, ``sys.base_prefix``: a venv brings the venv, never the directory it
  sits in, so a checkout holding ``.venv`` stays invisible), its site-packages, the system's
  shared libraries (/lib*, /usr/lib*, /etc/ld.so.cache), all bound read-only; this PID
  namespace's /proc; a /dev with null, zero, full, random and urandom only (bwrap adds its tty
  nodes, read-only); a generated /etc (passwd, group, hosts); and the working directory, a fresh
  tmpfs capped in size and inodes, the only writable place. Nothing else of the host exists in
  there: no checkout, no $HF_HOME, no .env, no /tmp or /run, no pathname unix socket.
- Network: the network namespace has only a downed loopback; nothing is reachable, not even
  127.0.0.1; abstract unix sockets are per network namespace.
- Processes: the init is PID 1 of the PID namespace: when the program exits or the wall timeout
  kills the init, the kernel kills every process left in the namespace, whatever session or
  process group it moved to.
- Privileges: no_new_privs, an empty capability bounding set (dropped before the uid changes),
  empty capability sets, all checked in /proc/self/status before exec; every prctl is checked.
- Memory (:attr:`Execution.memory_bound`): ``cgroup`` where a writable cgroup v2 is delegated
  (:mod:`quantgate.sandbox.cgroup`): ``memory.max`` = the run's total + its working directory,
  ``pids.max``, for every process and the kernel memory charged to them; otherwise
  ``rlimit+seccomp``: RLIMIT_AS per process times a process budget (``memory_total_mb //
  memory_mb``, default one process, threads allowed), the workdir's size and inode cap, and a
  seccomp filter refusing memfd_create, SysV shared memory, message queues and semaphores,
  io_uring, every mount syscall and new namespaces (x86_64 and aarch64; elsewhere ``rlimit``).
  Not bounded without a cgroup: kernel memory the filter cannot see, such as page tables, pipe
  and socket buffers (at most the open-files limit of them, each up to the kernel's buffer
  maxima), negative dentries and inotify watches (reclaimable, or under per-user sysctls).
- Failures of the sandbox itself reach the host only through the init's status pipe, as a
  :class:`SandboxError`; nothing a program prints turns its own result into one.

Not hidden: the program sees paths (in /proc/1/cmdline and /proc/self/mountinfo: the staging
directory, the bound prefixes) and the bound prefixes' contents, the interpreter's whole
site-packages included.

This module is the API and picks the isolation; :mod:`quantgate.sandbox.command` builds a run's
command line, environment and filesystem plan, :mod:`quantgate.sandbox.cgroup` the run's cgroup
where one is delegated, :mod:`quantgate.sandbox.run` runs it, collects its output, kills what is
left and classifies the outcome, and ``_init.py`` is the init itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from quantgate.runs import RunError
from quantgate.sandbox.command import Limits, label, scrub_env
from quantgate.sandbox.run import Execution, SandboxError, processes_in_namespace, run_once, tail

ISOLATIONS = ("auto", "unshare", "bwrap", "none")


class SandboxUnavailable(RunError, RuntimeError):
    """No isolation works here; the message says what failed and how to opt out. A
    :class:`~quantgate.runs.RunError`: the case ran (it needs the sandbox) and broke."""


@dataclass(frozen=True)
class IOTest:
    """One test: stdin in, stdout checked."""

    __test__ = False  # not a pytest class
    stdin: str
    expected: str
    check: Callable[[str], bool] | None = None  # default: stripped stdout == stripped expected


@dataclass
class Verdict:
    """passed | wrong_answer | timeout | runtime_error | limit_exceeded, and which test failed."""

    status: str
    test: int | None = None
    detail: str = ""
    isolation: str = ""
    executions: list[Execution] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Sandbox:
    def __init__(
        self,
        isolation: str | None = None,
        limits: Limits = Limits(),  # noqa: B008 - frozen, so one shared default is safe
        python: str = sys.executable,
        uid: int | None = None,
    ) -> None:
        wanted = isolation or os.environ.get("QUANTGATE_SANDBOX") or "auto"
        if wanted not in ISOLATIONS:
            raise ValueError(f"isolation {wanted!r}: expected one of {ISOLATIONS}")
        self.limits, self.python, self.uid = limits, python, uid
        self.mode = _resolve(wanted, python)

    @property
    def isolation(self) -> str:
        """What is in force: unshare+setuid, unshare+userns, bwrap or none."""
        return label(self.mode)

    def run(
        self,
        files: dict[str, str | bytes],
        argv: Sequence[str],
        *,
        stdin: str = "",
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
    ) -> Execution:
        """Run ``python <argv>`` in a fresh working directory holding ``files``."""
        return run_once(
            self.mode,
            files,
            list(argv),
            stdin,
            limits or self.limits,
            env or {},
            self.python,
            self.uid,
        )

    def judge(
        self,
        files: dict[str, str | bytes],
        argv: Sequence[str],
        tests: Sequence[IOTest],
        *,
        limits: Limits | None = None,
    ) -> Verdict:
        """Run the program once per test (stdin in, stdout checked); stop at the first failure."""
        executions = []
        for index, test in enumerate(tests):
            run = self.run(files, argv, stdin=test.stdin, limits=limits)
            executions.append(run)
            if run.status != "ok":
                detail = f"{run.limit or ''} {tail(run.stderr)}".strip()
                return Verdict(run.status, index, detail, run.isolation, executions)
            ok = (
                test.check(run.stdout)
                if test.check
                else run.stdout.strip() == test.expected.strip()
            )
            if not ok:
                return Verdict(
                    "wrong_answer",
                    index,
                    f"got {run.stdout[:200]!r}, expected {test.expected[:200]!r}",
                    run.isolation,
                    executions,
                )
        return Verdict("passed", None, "", self.isolation, executions)


# --- isolation probing -------------------------------------------------------------------------

_PROBED: dict[tuple[str, str], str | None] = {}  # (mode, python) -> None when it works, else why


def _resolve(wanted: str, python: str) -> str:
    if wanted == "none":
        return "none"
    candidates = ["unshare", "bwrap"] if wanted == "auto" else [wanted]
    reasons = []
    for mode in candidates:
        key = (mode, python)
        if key not in _PROBED:
            _PROBED[key] = _probe(mode, python)
        if _PROBED[key] is None:
            return mode
        reasons.append(f"{mode}: {_PROBED[key]}")
    raise SandboxUnavailable(
        "no sandbox isolation works on this machine (" + "; ".join(reasons) + "). Install "
        "util-linux (unshare) or bubblewrap, allow user namespaces (sysctl "
        "kernel.unprivileged_userns_clone=1), or run as root; to run model-written code "
        "WITHOUT isolation, opt out explicitly with QUANTGATE_SANDBOX=none"
    )


def _probe(mode: str, python: str) -> str | None:
    tool = "unshare" if mode == "unshare" else "bwrap"
    if shutil.which(tool) is None:
        return f"{tool} is not installed"
    try:
        run = run_once(
            mode,
            {"probe.py": "print('ok')"},
            ["probe.py"],
            "",
            Limits(wall_seconds=30),
            {},
            python,
            None,
        )
    except SandboxError as exc:
        return str(exc)
    return (
        None
        if run.status == "ok" and run.stdout == "ok\n"
        else f"probe failed ({run.status}): {tail(run.stderr)}"
    )


__all__ = [
    "Execution",
    "IOTest",
    "Limits",
    "Sandbox",
    "SandboxError",
    "SandboxUnavailable",
    "Verdict",
    "processes_in_namespace",
    "scrub_env",
]
