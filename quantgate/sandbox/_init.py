"""The sandbox's init: the first process inside the namespaces that ``quantgate.sandbox`` creates.

    python -I -S _init.py SPEC.json      (started by quantgate.sandbox.run, never by hand)

Trusted code, standard library only (it runs by path, never importing quantgate). In order:

1. reads the spec and the staged files (program, inputs, stdin) while the host's /tmp is visible;
2. with ``mounts`` (the ``unshare`` modes, where it holds CAP_SYS_ADMIN over its own mount
   namespace) builds the program's filesystem from an EMPTY root, an allow-list: a small tmpfs
   holding only the ``binds`` (the interpreter's prefixes and site-packages, the system's
   libraries, the loader cache; bound read-only) and the ``links`` on the way to them, this PID
   namespace's /proc, a /dev with only null, zero, full, random and urandom, a generated /etc
   (passwd, group, hosts) and the working directory, a tmpfs capped in size and inodes; then
   pivot_root into it, detaches the host's whole tree, makes every mount but the working
   directory and /proc read-only and checks that it is so. (bwrap builds the same root itself.)
3. forks the program: new session, privileges dropped for good — no_new_privs, the capability
   bounding set emptied (BEFORE changing uid: it needs CAP_SETPCAP), ambient set cleared, setuid
   to an unprivileged uid when started as real root, every capability set emptied, all checked
   in /proc/self/status — then rlimits, then the seccomp filter (no memfd, SysV IPC, io_uring,
   mounts or new namespaces; with a process budget of one, no new processes, threads allowed),
   then exec;
4. waits for it and writes its exit status and rusage as one JSON line to the status fd.

Every failure of the init's own, before or after the fork, is reported only as an ``error``
line on the status fd, which the program cannot reach (closed in the child, the init not
dumpable); the program's stdout and stderr are only ever the program's. Every prctl is checked.

It stays PID 1 of the PID namespace: when it exits, the kernel kills every process left in the
namespace — daemons, setsid escapees and sleeping children included. The program cannot kill it:
PID 1 ignores signals from inside its namespace that it has no handler for.
"""

import ctypes
import errno
import json
import os
import re
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
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
PR_SET_DUMPABLE, PR_GET_SECCOMP, PR_SET_SECCOMP = 4, 21, 22
PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 23, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SECCOMP_MODE_FILTER = 2
LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "msgqueue": resource.RLIMIT_MSGQUEUE,
}
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
DEVICES = ("null", "zero", "full", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.prctl.restype = ctypes.c_int


def prctl(option, arg2=0, arg3=0, what=""):
    """prctl, checked: -1 raises OSError naming the call."""
    result = libc.prctl(option, arg2, arg3, 0, 0)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({what or option}) failed: {os.strerror(err)}")
    return result


def report(fd, **fields):
    os.write(fd, (json.dumps(fields) + "\n").encode())


def fail(status_fd, message):
    """The init's own failure: an ``error`` line on the status fd, never the program's stderr."""
    try:
        report(status_fd, error=message)
    finally:
        os._exit(125)


def mount(source, target, fstype, flags, data=None):
    def enc(s):
        return None if s is None else os.fsencode(s)

    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def mounts():
    """(mount point, per-mount options) of every mount in this mount namespace."""
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4])  # \040
            found.append((os.fsdecode(point), set(fields[5].decode().split(","))))
    return found


def writable_allowed(point, work):
    return point == work or point == "/proc" or point.startswith("/proc/")


def read_only(point):
    """Remount ``point`` read-only, keeping the flags the kernel locks (nosuid, nodev, atime...)."""
    flags = os.statvfs(point).f_flag
    keep = 0
    for st, ms in ST_TO_MS.items():
        if flags & st:
            keep |= ms
    try:
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot make {point} read-only: {exc}") from None


def remount_read_only(work):
    """Every mount but the working directory and /proc read-only; then check that it is so."""
    for point, _ in mounts():
        if writable_allowed(point, work):
            continue
        try:
            os.statvfs(point)
        except OSError:
            continue  # shadowed by a later mount: checked below through mountinfo
        read_only(point)
    left = [p for p, options in mounts() if "ro" not in options and not writable_allowed(p, work)]
    if left:
        raise OSError(errno.EPERM, f"still writable after remounting: {left}")


def pivot_into(root):
    """Make ``root`` the root and detach the host's tree (pivot_root(".", ".") then umount)."""
    machine = os.uname().machine
    if machine not in PIVOT_ROOT:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {machine}")
    os.chdir(root)
    if libc.syscall(ctypes.c_long(PIVOT_ROOT[machine]), b".", b".") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root into {root}: {os.strerror(err)}")
    if libc.umount2(b".", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot detach the host's root: {os.strerror(err)}")
    os.chdir("/")


def setup_root(spec, files):
    """The empty root (see the module docstring), entered with pivot_root."""
    root, work = spec["root"], spec["work"]
    nodes = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES}
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(root, exist_ok=True)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for path, target in spec["links"]:
        os.makedirs(root + os.path.dirname(path), exist_ok=True)
        os.symlink(target, root + path)
    for path in spec["binds"]:
        target = root + path
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount(path, target, None, MS_BIND | MS_REC)
        read_only(target)  # at once: nothing below may write through to the host
    os.makedirs(root + "/proc", exist_ok=True)
    mount("/proc", root + "/proc", None, MS_BIND | MS_REC)  # this PID namespace's (--mount-proc)
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755")
    for name, fd in nodes.items():
        open(f"{dev}/{name}", "w").close()
        mount(f"/proc/self/fd/{fd}", f"{dev}/{name}", None, MS_BIND)
        os.close(fd)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    write_etc(root + "/etc", spec)
    os.makedirs(root + work, exist_ok=True)
    pivot_into(root)
    mount_work(spec)
    write_files(work, files, spec)
    remount_read_only(work)


def mount_work(spec):
    """The working directory: a tmpfs capped in size and in inodes (files and directories)."""
    owner = f",uid={spec['uid']},gid={spec['gid']}" if spec["uid"] is not None else ""
    options = f"size={spec['work_mb']}m,nr_inodes={spec['work_inodes']},mode=700{owner}"
    mount("tmpfs", spec["work"], "tmpfs", MS_NOSUID | MS_NODEV, options)


def write_etc(etc, spec):
    """A generated /etc (see command.etc_files): nothing of the host's."""
    os.makedirs(etc, exist_ok=True)
    for name, text in spec["etc"].items():
        with open(f"{etc}/{name}", "w") as f:
            f.write(text)


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


# --- privileges --------------------------------------------------------------------------------


def drop_privileges(spec):
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")
    if spec["drop_bounding"]:  # before setuid: dropping needs CAP_SETPCAP, which setuid clears
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
        for cap in range(last + 1):
            if prctl(PR_CAPBSET_READ, cap, what=f"PR_CAPBSET_READ {cap}") == 1:
                prctl(PR_CAPBSET_DROP, cap, what=f"PR_CAPBSET_DROP {cap}")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="PR_CAP_AMBIENT_CLEAR_ALL")
    if spec["setuid"]:  # real root: become an unprivileged uid (clears every capability)
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])

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
        err = ctypes.get_errno()
        raise OSError(err, f"capset failed: {os.strerror(err)}")
    check_status(spec)


def check_status(spec):
    """What the kernel says of this process: no capability left, no_new_privs set."""
    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    sets = ["CapInh", "CapPrm", "CapEff", "CapAmb"] + (["CapBnd"] if spec["drop_bounding"] else [])
    left = {name: status.get(name) for name in sets if int(status.get(name, "0"), 16)}
    if left or status.get("NoNewPrivs") != "1":
        raise OSError(
            errno.EPERM, f"privileges left: {left}, NoNewPrivs {status.get('NoNewPrivs')}"
        )


# --- seccomp -----------------------------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
# refused with EPERM: memory that RLIMIT_AS does not count (memfds, SysV shared memory, message
# queues and semaphores, io_uring rings) and what would let the program make its own tmpfs or
# namespaces (the mount syscalls, unshare, setns; clone with namespace flags below)
DENIED = {
    "x86_64": {
        "memfd_create": 319,
        "memfd_secret": 447,
        "shmget": 29,
        "msgget": 68,
        "semget": 64,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "open_tree_attr": 467,
        "unshare": 272,
        "setns": 308,
    },
    "aarch64": {
        "memfd_create": 279,
        "memfd_secret": 447,
        "shmget": 194,
        "msgget": 186,
        "semget": 190,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "open_tree_attr": 467,
        "unshare": 97,
        "setns": 268,
    },
}
FORKS = {"x86_64": (57, 58), "aarch64": ()}  # fork, vfork (aarch64 has only clone)
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = 435  # its flags are behind a pointer: ENOSYS, and glibc falls back to clone
CLONE_THREAD = 0x00010000
CLONE_NEWNS_ETC = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
CLONE_NEWNS_ETC |= 0x40000000 | 0x00000080  # ... NEWNET, NEWTIME
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg0's low 32 bits: little endian)


def seccomp_program(arch, single_process):
    """The BPF filter, as (code, jt, jf, k) instructions. A syscall of another architecture (or
    the x32 ABI) kills the process; the denied ones fail with EPERM; clone3 with ENOSYS; with
    ``single_process``, fork, vfork and clone without CLONE_THREAD fail with EAGAIN (what
    RLIMIT_NPROC gives), threads stay allowed."""
    prog = [
        (LD_W_ABS, 0, 0, ARCH),
        (JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        (RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    prog.append((LD_W_ABS, 0, 0, NR))
    if arch == "x86_64":
        prog += [(JGE_K, 0, 1, X32_SYSCALL_BIT), (RET_K, 0, 0, RET_KILL_PROCESS)]
    for nr in DENIED[arch].values():
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_ERRNO | errno.EPERM)]
    prog += [(JEQ_K, 0, 1, CLONE3), (RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]
    if single_process:
        for nr in FORKS[arch]:
            prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_ERRNO | errno.EAGAIN)]
    prog += [(JEQ_K, 1, 0, CLONE[arch]), (RET_K, 0, 0, RET_ALLOW), (LD_W_ABS, 0, 0, ARG0)]
    prog += [(JSET_K, 0, 1, CLONE_NEWNS_ETC), (RET_K, 0, 0, RET_ERRNO | errno.EPERM)]
    if single_process:
        prog += [(JSET_K, 0, 1, CLONE_THREAD), (RET_K, 0, 0, RET_ALLOW)]
        prog.append((RET_K, 0, 0, RET_ERRNO | errno.EAGAIN))
    prog.append((RET_K, 0, 0, RET_ALLOW))
    return prog


def install_seccomp(config):
    class Filter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    if os.uname().machine != config["arch"]:
        raise OSError(errno.ENOSYS, f"seccomp filter for {config['arch']} on {os.uname().machine}")
    instructions = seccomp_program(config["arch"], config["single_process"])
    table = (Filter * len(instructions))(*(Filter(*i) for i in instructions))
    program = Program(len(instructions), ctypes.cast(table, ctypes.POINTER(Filter)))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(program), what="PR_SET_SECCOMP")
    if prctl(PR_GET_SECCOMP, what="PR_GET_SECCOMP") != SECCOMP_MODE_FILTER:
        raise OSError(errno.EPERM, "the seccomp filter is not in force")


# --- the program -------------------------------------------------------------------------------


def run_child(spec, stdin_fd, status_fd, error_fd):
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
    os.closerange(3, error_fd)
    os.closerange(error_fd + 1, 65536)
    if spec["seccomp"]:
        install_seccomp(spec["seccomp"])
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


def read_all(fd):
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return data
        data += chunk


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    status_fd = spec["status_fd"]
    try:
        os.umask(0o022)  # the root's directories must be traversable by the program's uid
        os.set_inheritable(status_fd, False)
        prctl(PR_SET_DUMPABLE, 0, what="PR_SET_DUMPABLE")  # no ptrace, no /proc/1/fd for others
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        report(status_fd, pidns=os.readlink("/proc/self/ns/pid"))
        staging = spec["staging"]
        files = {}
        for name in spec["files"]:
            with open(os.path.join(staging, name), "rb") as f:
                files[name] = f.read()
        stdin_fd = os.open(os.path.join(staging, spec["stdin"]), os.O_RDONLY)
        if spec["mounts"] == "root":
            setup_root(spec, files)
        elif spec["mounts"] == "work":  # bwrap made the root; the init adds the capped workdir
            mount_work(spec)
            write_files(spec["work"], files, spec)
            remount_read_only(spec["work"])
        else:
            write_files(spec["work"], files, spec)
        error_r, error_w = os.pipe2(os.O_CLOEXEC)  # closed by a successful exec
    except Exception as exc:  # noqa: BLE001 - reported through the status fd
        fail(status_fd, f"cannot set up the sandbox: {exc}")
    pid = os.fork()
    if pid == 0:
        try:
            os.close(error_r)
            run_child(spec, stdin_fd, status_fd, error_w)
        except BaseException as exc:  # noqa: BLE001 - report, never fall through
            try:
                os.write(error_w, repr(exc).encode(errors="replace")[:2000])
            except OSError:
                pass
        os._exit(126)
    os.close(stdin_fd)
    os.close(error_w)
    problem = read_all(error_r).decode(errors="replace")
    os.close(error_r)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    if problem:
        fail(status_fd, f"could not start the program: {problem}")
    report(
        status_fd,
        exit=os.waitstatus_to_exitcode(status),
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
    )
    os._exit(0)


if __name__ == "__main__":
    main()
