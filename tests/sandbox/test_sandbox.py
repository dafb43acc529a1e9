"""The sandbox's API: stdin in, verdicts out, the environment it gives a program, what it refuses
and the explicit opt-out, and each isolation this machine offers."""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from quantgate import sandbox as sb
from quantgate.runs import RunError
from quantgate.sandbox import (
    IOTest,
    Limits,
    Sandbox,
    SandboxError,
    SandboxUnavailable,
    scrub_env,
)
from quantgate.sandbox import cgroup as sbcgroup
from quantgate.sandbox import command as sbcommand
from quantgate.sandbox import run as sbrun

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the sandbox uses Linux namespaces"
)
FAST = Limits(wall_seconds=4, cpu_seconds=2, memory_mb=512)


@pytest.fixture(scope="module")
def box():
    return Sandbox(limits=FAST)


def test_stdin_in_stdout_out(box):
    run = box.run({"main.py": "print(int(input()) * 2)"}, ["main.py"], stdin="21\n")
    assert (run.status, run.stdout, run.exit_code) == ("ok", "42\n", 0)
    assert run.isolation in ("unshare+setuid", "unshare+userns", "bwrap")
    assert run.pidns and sbrun.processes_in_namespace(run.pidns) == []


def test_the_working_directory_is_fresh_and_the_only_writable_place(box):
    program = (
        "import os\nprint(sorted(os.listdir('.')))\nopen('out.txt', 'w').write('x')\n"
        "os.makedirs('sub/dir')\nprint(os.environ['HOME'] == os.getcwd())\n"
        "import tempfile\nprint(tempfile.gettempdir() == os.getcwd())\n"
        "print(open('data/input.txt').read())"
    )
    run = box.run({"main.py": program, "data/input.txt": "payload"}, ["main.py"])
    assert run.status == "ok", run.stderr
    assert run.stdout.splitlines() == ["['data', 'main.py']", "True", "True", "payload"]
    again = box.run({"main.py": "import os\nprint(os.listdir('.'))"}, ["main.py"])
    assert again.stdout == "['main.py']\n"  # nothing left from the previous run


def test_devices_are_only_the_harmless_ones(box):
    program = (
        "import os\nprint(sorted(os.listdir('/dev')))\n"
        "open('/dev/null', 'w').write('x')\nprint(len(open('/dev/urandom', 'rb').read(8)))"
    )
    run = box.run({"main.py": program}, ["main.py"])
    assert run.status == "ok", run.stderr
    names, read = run.stdout.splitlines()
    # unshare: exactly these; bwrap's --dev adds tty, console, pts, ptmx, core and an empty,
    # read-only shm. No disks, GPUs, kvm, loop devices.
    assert (
        {"null", "zero", "full", "random", "urandom"}
        <= set(eval(names))
        <= {
            "null",
            "zero",
            "full",
            "random",
            "urandom",
            "fd",
            "stdin",
            "stdout",
            "stderr",
            "tty",
            "console",
            "pts",
            "ptmx",
            "core",
            "shm",
        }
    )
    assert read == "8"


def test_the_environment_is_built_not_inherited(box, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("QUANTGATE_HOST_ONLY", "1")
    program = "import json, os\nprint(json.dumps(dict(os.environ)))"
    run = box.run(
        {"main.py": program},
        ["main.py"],
        env={
            "MY_SETTING": "1",
            "AWS_SECRET_ACCESS_KEY": "x",
            "OPENAI_API_KEY": "y",
            "HTTPS_PROXY": "http://p:3128",
        },
    )
    env = __import__("json").loads(run.stdout)
    assert env["MY_SETTING"] == "1" and env["OMP_NUM_THREADS"] == "1"
    for name in (
        "HF_TOKEN",
        "QUANTGATE_HOST_ONLY",
        "AWS_SECRET_ACCESS_KEY",
        "OPENAI_API_KEY",
        "HTTPS_PROXY",
    ):
        assert name not in env


def test_scrub_env_drops_credentials_and_proxies():
    env = {
        "HF_TOKEN": "a",
        "HUGGING_FACE_HUB_TOKEN": "b",
        "GITHUB_TOKEN": "c",
        "MY_API_KEY": "d",
        "DB_PASSWORD": "e",
        "CLIENT_SECRET": "f",
        "http_proxy": "g",
        "HTTPS_PROXY": "h",
        "no_proxy": "i",
        "PATH": "/bin",
        "KEYBOARD": "us",
        "TOKENIZERS_PARALLELISM": "false",
    }
    assert scrub_env(env) == {"PATH": "/bin", "KEYBOARD": "us", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_judge_says_which_test_failed_and_how(box):
    double = {"main.py": "print(int(input()) * 2)"}
    tests = [IOTest("1\n", "2"), IOTest("2\n", "4"), IOTest("3\n", "7")]
    verdict = box.judge(double, ["main.py"], tests)
    assert (verdict.status, verdict.test) == ("wrong_answer", 2)
    assert "expected '7'" in verdict.detail and len(verdict.executions) == 3
    assert box.judge(double, ["main.py"], tests[:2]).passed
    crash = box.judge(
        {"main.py": "x = int(input())\nassert x < 2\nprint(2 * x)"}, ["main.py"], tests
    )
    assert (crash.status, crash.test) == ("runtime_error", 1) and "AssertionError" in crash.detail
    slow = box.judge({"main.py": "import time\ntime.sleep(60)"}, ["main.py"], tests)
    assert (slow.status, slow.test) == ("timeout", 0)
    custom = box.judge(double, ["main.py"], [IOTest("5", "", check=lambda out: out == "10\n")])
    assert custom.passed


@pytest.mark.parametrize(
    "program,status,limit",
    [
        pytest.param("while True: pass", "timeout", "cpu", marks=pytest.mark.slow),
        pytest.param("import time\ntime.sleep(60)", "timeout", "wall", marks=pytest.mark.slow),
        ("x = bytearray(2 << 30)", "limit_exceeded", "memory"),
        ("open('f', 'wb').write(bytes(64 << 20))", "limit_exceeded", "file_size"),
        ("import sys\nsys.stdout.write('x' * (2 << 20))", "limit_exceeded", "output"),
        ("fs = [open('main.py') for _ in range(10000)]", "limit_exceeded", "open_files"),
        ("import sys\nsys.exit(3)", "runtime_error", None),
    ],
)
def test_limits_are_reported(box, program, status, limit):
    if limit == "cpu":  # wall time far above the CPU limit: a loaded machine still hits CPU first
        box = Sandbox(limits=dataclasses.replace(FAST, wall_seconds=FAST.cpu_seconds * 15))
    run = box.run({"main.py": program}, ["main.py"])
    assert (run.status, run.limit) == (status, limit), run.stderr[-500:]


def test_bad_file_names_are_refused(box, tmp_path, monkeypatch):
    monkeypatch.setattr(sbrun.tempfile, "tempdir", str(tmp_path))
    for name in ("../x.py", "/etc/x", ".hidden"):
        with pytest.raises(ValueError, match="relative path"):
            box.run({name: "print(1)"}, [name])
    box.run({"main.py": "print(1)"}, ["main.py"])
    assert list(tmp_path.iterdir()) == []  # nothing left behind either way


def test_no_isolation_is_a_run_error():
    assert issubclass(SandboxUnavailable, RunError)  # the case fails, with the message


def test_without_isolation_it_refuses_unless_the_caller_opts_out(monkeypatch):
    monkeypatch.setattr(sb, "_PROBED", {})
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    monkeypatch.delenv("QUANTGATE_SANDBOX", raising=False)
    with pytest.raises(SandboxUnavailable, match="QUANTGATE_SANDBOX=none") as err:
        Sandbox()
    assert "unshare is not installed" in str(err.value)
    assert "bwrap is not installed" in str(err.value)
    opted_out = Sandbox("none", limits=FAST)
    run = opted_out.run({"main.py": "print('hi')"}, ["main.py"])
    assert (run.status, run.stdout, run.isolation) == ("ok", "hi\n", "none")
    monkeypatch.setenv("QUANTGATE_SANDBOX", "none")
    assert Sandbox().isolation == "none"
    with pytest.raises(ValueError, match="expected one of"):
        Sandbox("docker")


@pytest.mark.parametrize("mode", ["unshare", "bwrap"])
def test_each_isolation_available_here_contains_a_write(mode, tmp_path):
    if shutil.which(mode) is None:
        pytest.skip(f"{mode} is not installed here")
    box = Sandbox(mode, limits=FAST)
    target = tmp_path / "outside.txt"
    program = (
        f"import socket\ntry:\n    open({str(target)!r}, 'w').write('x')\n"
        "    print('wrote')\nexcept OSError as e:\n    print('refused', e.errno)\n"
        "try:\n    socket.create_connection(('127.0.0.1', 22), timeout=1)\n"
        "except OSError as e:\n    print('net', e.errno)"
    )
    run = box.run({"main.py": program}, ["main.py"])
    assert run.status == "ok" and run.stdout.startswith("refused"), run.stdout + run.stderr
    assert not target.exists()
    assert run.isolation == box.isolation


def _top(path: str) -> str:
    return Path(path).parts[1] if len(Path(path).parts) > 1 else ""


def test_the_filesystem_is_an_allow_list(box):
    """An empty root with the interpreter, the system libraries, /dev, /proc, a generated /etc
    and the working directory: nothing else of the host, the checkout included."""
    program = (
        "import json, os\n"
        "print(json.dumps({d: sorted(os.listdir(d)) for d in ('/', '/usr', '/etc', '/dev')}))\n"
        "print(open('/etc/passwd').read().splitlines()[-1].split(':')[0])"
    )
    run = box.run({"main.py": program}, ["main.py"])
    assert run.status == "ok", run.stderr
    listing = json.loads(run.stdout.splitlines()[0])
    prefixes = {sys.prefix, sys.base_prefix, os.path.realpath(sys.prefix)}
    prefixes.add(os.path.realpath(sys.base_prefix))
    allowed = {"dev", "proc", "etc", "usr", "lib", "lib32", "lib64", "libx32"}
    allowed |= {_top(p) for p in prefixes} | {_top(tempfile.gettempdir())}
    if box.isolation == "bwrap":
        allowed.add(_top(sbcommand.BWRAP_INIT))  # bwrap runs the init from inside
    assert set(listing["/"]) <= allowed, listing["/"]
    assert {"sys", "srv", "home", "var", "opt", "mnt", "boot"}.isdisjoint(
        set(listing["/"]) - {_top(p) for p in prefixes}
    )
    if not any(p.startswith("/usr/") or p == "/usr" for p in prefixes):
        assert set(listing["/usr"]) <= {"lib", "lib32", "lib64", "libx32"}, listing["/usr"]
    assert set(listing["/etc"]) <= {"passwd", "group", "hosts", "ld.so.cache"}, listing["/etc"]
    assert set(listing["/dev"]) >= {"null", "zero", "urandom"}
    assert run.stdout.splitlines()[1] == "sandbox"


def test_the_checkout_is_not_visible_only_its_virtualenv(box):
    repo = Path(__file__).resolve().parents[2]
    program = (
        "import json, os, sys\n"
        f"repo = {str(repo)!r}\n"
        "print(json.dumps([os.path.exists(os.path.join(repo, n)) for n in "
        "('pyproject.toml', 'tests', 'quantgate', '.git', '.quantgate')]))\n"
        "print(sys.prefix)"
    )
    run = box.run({"main.py": program}, ["main.py"])
    assert run.status == "ok", run.stderr
    assert json.loads(run.stdout.splitlines()[0]) == [False] * 5
    assert run.stdout.splitlines()[1] == sys.prefix


def test_the_scientific_stack_imports(box):
    """What SciCode's step scripts and the shim import (numpy, scipy, h5py, sympy)."""
    program = (
        "import h5py, numpy, scipy.sparse, scipy.linalg, sympy\n"
        "print(numpy.linalg.solve(numpy.eye(2), [1, 2]).tolist(), sympy.Integer(2) ** 3)"
    )
    limits = Limits(wall_seconds=30, cpu_seconds=20, memory_mb=2048)
    run = box.run({"main.py": program}, ["main.py"], limits=limits)
    assert (run.status, run.stdout) == ("ok", "[1.0, 2.0] 8\n"), run.stderr[-1500:]


def test_the_memory_bound_in_force_is_reported(box):
    run = box.run({"main.py": "print(1)"}, ["main.py"])
    assert run.memory_bound in ("cgroup", "rlimit+seccomp")
    parent, why = sbcgroup.delegated_parent()
    assert run.memory_bound == ("cgroup" if parent else "rlimit+seccomp"), why


def _rlimit_bound(box) -> bool:
    return box.run({"main.py": "pass"}, ["main.py"]).memory_bound != "cgroup"


def test_one_process_per_memory_budget_threads_allowed(box):
    """Without a cgroup: at most memory_total_mb // memory_mb processes (default one), each
    with RLIMIT_AS; threads share their process's address space and stay allowed."""
    if not _rlimit_bound(box):
        pytest.skip("a cgroup bounds the run's memory here")
    threads = (
        "import threading\n"
        "ts = [threading.Thread(target=lambda: None) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\nprint('threads ok')\n"
    )
    forks = (
        "import os\nkids = 0\n"
        "try:\n"
        "    for _ in range(5):\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(30)\n"
        "        kids += 1\n"
        "except OSError as e:\n"
        "    print('fork refused', e.errno)\n"
        "print('children', kids)"
    )
    one = Limits(memory_mb=256)
    run = box.run({"main.py": threads}, ["main.py"], limits=one)
    assert (run.status, run.stdout) == ("ok", "threads ok\n"), run.stderr
    run = box.run({"main.py": forks}, ["main.py"], limits=one)
    assert run.status == "ok", run.stderr
    assert run.stdout.splitlines() == ["fork refused 11", "children 0"]
    if box.isolation == "bwrap" and os.geteuid() == 0:
        return  # the program runs as root there, to which RLIMIT_NPROC does not apply
    wider = Limits(memory_mb=256, memory_total_mb=3 * 256)  # RLIMIT_NPROC 3, threads included
    run = box.run({"main.py": forks}, ["main.py"], limits=wider)
    assert run.status == "ok", run.stderr
    assert run.stdout.splitlines() == ["fork refused 11", "children 2"], run.stdout


def test_memfd_ipc_and_namespaces_are_refused(box):
    """Memory outside RLIMIT_AS and a tmpfs of its own (through a new user namespace): the
    seccomp filter refuses them, with or without a cgroup."""
    if sbcommand.seccomp_arch() is None:
        pytest.skip("no seccomp filter for this architecture")
    program = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "try:\n    os.memfd_create('x')\nexcept OSError as e:\n    print('memfd', e.errno)\n"
        "for name, args in (('shmget', (0, 1 << 20, 0o1600)), ('msgget', (0, 0o1600)),\n"
        "                   ('semget', (0, 1, 0o1600)), ('unshare', (0x10000000,))):\n"
        "    print(name, getattr(libc, name)(*args), ctypes.get_errno())"
    )
    run = box.run({"main.py": program}, ["main.py"])
    assert run.status == "ok", run.stderr
    assert run.stdout.splitlines() == [
        "memfd 1",
        "shmget -1 1",
        "msgget -1 1",
        "semget -1 1",
        "unshare -1 1",
    ]


def test_the_working_directory_caps_its_inodes(box):
    program = (
        "import os\nn = 0\ntry:\n    while n < 20000:\n"
        "        os.mkdir(f'd{n}')\n        n += 1\nexcept OSError as e:\n"
        "    print(n, e.errno)"
    )
    run = box.run({"main.py": program}, ["main.py"], limits=Limits(workdir_inodes=300))
    assert run.status == "ok", run.stderr
    made, errno = map(int, run.stdout.split())
    assert 250 <= made <= 300 and errno == 28  # ENOSPC; a few inodes hold the root and files


@pytest.mark.parametrize(
    "limits",
    [Limits(workdir_mb=0), Limits(workdir_inodes=0), Limits(memory_mb=512, memory_total_mb=256)],
)
def test_limits_that_would_mean_unlimited_are_refused(box, limits):
    with pytest.raises(ValueError):
        box.run({"main.py": "pass"}, ["main.py"], limits=limits)


@pytest.mark.parametrize("uid", [0, -1, 2**32 - 1])
def test_a_uid_that_would_keep_root_is_refused(uid):
    with pytest.raises(ValueError, match="uid"):
        Sandbox(limits=FAST, uid=uid).run({"main.py": "pass"}, ["main.py"])


def test_the_init_marker_printed_by_a_program_is_its_own_output(box):
    marker = "quantgate sandbox init: cannot start the program: PermissionError(1)"
    program = f"import sys\nsys.stderr.write({marker!r} + '\\n')\nprint(int(input()) * 2)"
    run = box.run({"main.py": program}, ["main.py"], stdin="21\n")
    assert (run.status, run.stdout) == ("ok", "42\n"), run.stderr
    assert marker in run.stderr


def test_an_init_failure_comes_through_the_status_pipe(box):
    """The program cannot start (a limit above what the unprivileged program may be given):
    the sandbox says so as a SandboxError, whatever the program's stderr would have held."""
    with pytest.raises(SandboxError, match="could not start the program"):
        box.run({"main.py": "print(1)"}, ["main.py"], limits=Limits(open_files=1 << 30))


def test_the_bwrap_command_is_built_from_an_empty_root(tmp_path):
    """bwrap is not installed everywhere: its command line, checked without running it."""
    spec = sbcommand.build_spec(
        "bwrap",
        {"main.py": "pass"},
        ["main.py"],
        str(tmp_path / "staging"),
        str(tmp_path / "work"),
        3,
        FAST,
        {},
        sys.executable,
        None,
    )
    cmd = sbcommand.command_line(
        "bwrap", spec, str(tmp_path / "staging" / ".spec.json"), sys.executable
    )
    pairs = list(zip(cmd, cmd[1:]))
    assert ("/", "/") not in list(zip(cmd[1:], cmd[2:])) and "--bind" not in cmd
    assert ("--cap-drop", "ALL") in pairs and ("--remount-ro", "/") in pairs
    bound = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ro-bind"}
    assert set(spec["binds"]) | {str(tmp_path / "staging"), str(sbcommand.INIT)} <= bound
    repo = str(Path(__file__).resolve().parents[2])
    assert all(not (repo + "/").startswith(b.rstrip("/") + "/") for b in bound)
    assert ("--dir", str(tmp_path / "work")) in pairs and spec["mounts"] == "work"
    etc = {cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--ro-bind"} & {"/etc/passwd"}
    assert etc == {"/etc/passwd"}  # generated, staged, bound: not the host's


def test_a_temporary_directory_with_a_space_and_non_ascii(box, tmp_path, monkeypatch):
    """Mount points are escaped in mountinfo (\\040) and may be UTF-8: the working directory is
    still recognised as the one writable mount."""
    odd = tmp_path / "with space é"
    odd.mkdir()
    monkeypatch.setattr(sbrun.tempfile, "tempdir", str(odd))
    run = box.run(
        {"main.py": "import os\nopen('x', 'w').write('1')\nprint(os.getcwd())"}, ["main.py"]
    )
    assert run.status == "ok", run.stderr
    assert run.stdout.startswith(str(odd) + "/")


def test_a_cgroup_setting_that_cannot_be_used_is_an_error(box, tmp_path, monkeypatch):
    monkeypatch.setenv(sbcgroup.ENV, str(tmp_path))
    with pytest.raises(SandboxError, match="not a cgroup v2 directory"):
        box.run({"main.py": "pass"}, ["main.py"])
    monkeypatch.setenv(sbcgroup.ENV, "off")
    assert box.run({"main.py": "pass"}, ["main.py"]).memory_bound == "rlimit+seccomp"


def test_a_delegated_cgroup_bounds_the_whole_run(box):
    """Where a cgroup v2 is delegated (QUANTGATE_SANDBOX_CGROUP, or the caller's own): processes
    may be many, their memory together is stopped at memory.max by the OOM killer."""
    parent, why = sbcgroup.delegated_parent()
    if parent is None:
        pytest.skip(f"no delegated cgroup v2 here ({why})")
    program = (
        "import os, time\nfor i in range(4):\n    if os.fork() == 0:\n"
        "        b = bytearray(100 << 20); b[::4096] = b'1' * (len(b) // 4096)\n"
        "        print(i, flush=True)\n        time.sleep(30)\n"
        "os.wait()"
    )
    limits = Limits(wall_seconds=20, memory_mb=256, workdir_mb=8)  # memory.max: 256 + 8 + 64
    run = box.run({"main.py": program}, ["main.py"], limits=limits)
    assert run.memory_bound == "cgroup"
    assert (run.status, run.limit) == ("limit_exceeded", "memory"), run.stdout + run.stderr
    assert len(run.stdout.split()) < 4  # not all four children held their 100 MiB at once
