"""The sandbox's init: the first process inside the namespaces that ``quantgate.sandbox`` creates.

    python -I -S _init.py SPEC.json      (started by quantgate.sandbox.run, never by hand)

Trusted code, standard library only (it runs by path, never importing quantgate). In order:

1. reads the spec and the staged files (program, inputs, stdin) while the host's /tmp is visible;
2. with ``mounts`` (the ``unshare`` modes, where it holds CAP_SYS_ADMIN over its own mount
   namespace): remounts every mount read-only, replaces /dev by a minimal one (null, zero, full,
   random, urandom), covers the ``hide`` directories (/tmp, /home, /root, /run, ...) with empty
   read-only tmpfs, binds the ``keep`` directories (the Python installation) back read-only,
   and mounts a size-capped tmpfs as the working directory;
3. forks the program: new session, resource limits, privileges dropped for good (setuid to an
   unprivileged uid when started as real root; an empty capability set and bounding set, and
   no_new_privs, in every mode), then exec;
4. waits for it and writes its exit status and rusage as one JSON line to the status fd.

It stays PID 1 of the PID namespace: when it exits, the kernel kills every process left in the
namespace — daemons, setsid escapees and sleeping children included. The program cannot kill it:
PID 1 ignores signals from inside its namespace that it has no handler for.
"""

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
# statvfs f_flag bit -> mount flag to keep on a bind remount (locked flags must be repeated)
ST_TO_MS = {
    1: MS_RDONLY,
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}

libc = ctypes.CDLL(None, use_errno=True)


def fail(message):
    sys.stderr.write(f"quantgate sandbox init: {message}\n")
    os._exit(125)


def mount(source, target, fstype, flags, data=None):
    def enc(s):
        return None if s is None else os.fsencode(s)

    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def mount_points():
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split()[4]
            points.append(raw.encode().decode("unicode_escape"))  # \040 -> space
    return points


def remount_all_read_only():
    """Every mount read-only, keeping the flags the kernel locks (nosuid, nodev, atime...)."""
    for point in mount_points():
        if point == "/proc" or point.startswith("/proc/"):
            continue  # this PID namespace's own proc (mounted by unshare --mount-proc)
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue  # shadowed by a later mount, or not reachable: nothing to write through
        keep = 0
        for st, ms in ST_TO_MS.items():
            if flags & st:
                keep |= ms
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError as exc:
            if not flags & 1:  # still writable: refuse to run rather than run uncontained
                raise OSError(exc.errno, f"cannot make {point} read-only: {exc}") from None


def cover(path, size="1m"):
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=755")


def read_only(path, flags=MS_NOSUID | MS_NODEV):
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


DEVICES = ("null", "zero", "full", "random", "urandom")


def minimal_dev():
    """A /dev with only null, zero, full, random and urandom (no disks, GPUs, shm or ttys)."""
    nodes = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES}
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name, fd in nodes.items():
        open(f"/dev/{name}", "w").close()
        mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
        os.close(fd)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"/dev/{name}")
    read_only("/dev", MS_NOSUID | MS_NOEXEC)


def setup_mounts(spec, files):
    keep = {}
    for path in spec["keep"]:  # opened now: they are about to be covered
        try:
            keep[path] = os.open(path, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            pass
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    remount_all_read_only()
    minimal_dev()
    covered = []
    for path in sorted(spec["hide"], key=len):
        if (
            os.path.isdir(path)
            and not os.path.islink(path)
            and not any(path == c or path.startswith(c + "/") for c in covered)
        ):
            cover(path)
            covered.append(path)
    for path, fd in keep.items():
        if any(path.startswith(c + "/") for c in covered):
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            read_only(path, MS_NOSUID | MS_NODEV)
        os.close(fd)
    work = spec["work"]
    os.makedirs(work, exist_ok=True)
    mount(
        "tmpfs",
        work,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={spec['work_mb']}m,mode=700,uid={spec['uid']},gid={spec['gid']}",
    )
    write_files(work, files, spec)
    for path in covered:
        read_only(path)


def write_files(work, files, spec):
    owner = spec["uid"] is not None and os.geteuid() == 0
    for name, data in files.items():
        target = os.path.join(work, name)
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent)
            if owner:
                for d in range(name.count("/")):
                    os.chown(
                        os.path.join(work, *name.split("/")[: d + 1]), spec["uid"], spec["gid"]
                    )
        with open(target, "wb") as f:
            f.write(data)
        if owner:
            os.chown(target, spec["uid"], spec["gid"])


def drop_privileges(spec):
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if spec["setuid"]:  # real root: become an unprivileged uid (clears every capability)
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    for cap in range(64):  # empty bounding set: nothing to regain on exec
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    data = (Data * 2)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def run_child(spec, stdin_fd, status_fd):
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    os.close(status_fd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.chdir(spec["work"])
    drop_privileges(spec)
    for name, value in spec["limits"].items():
        if value is not None:
            soft, hard = (value, value + 1) if name == "cpu" else (value, value)
            resource.setrlimit(LIMITS[name], (soft, hard))
    os.closerange(3, 65536)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    status_fd = spec["status_fd"]
    os.set_inheritable(status_fd, False)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/1/mem for the program
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(status_fd, (json.dumps({"pidns": os.readlink("/proc/self/ns/pid")}) + "\n").encode())
    staging = spec["staging"]
    files = {}
    for name in spec["files"]:
        with open(os.path.join(staging, name), "rb") as f:
            files[name] = f.read()
    stdin_fd = os.open(os.path.join(staging, spec["stdin"]), os.O_RDONLY)
    try:
        if spec["mounts"]:
            setup_mounts(spec, files)
        else:
            write_files(spec["work"], files, spec)
    except OSError as exc:
        fail(f"{exc}")
    pid = os.fork()
    if pid == 0:
        try:
            run_child(spec, stdin_fd, status_fd)
        except BaseException as exc:  # noqa: BLE001 - report, never fall through
            sys.stderr.write(f"quantgate sandbox init: cannot start the program: {exc!r}\n")
        os._exit(126)
    os.close(stdin_fd)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    report = {
        "exit": os.waitstatus_to_exitcode(status),
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
    }
    os.write(status_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main()
