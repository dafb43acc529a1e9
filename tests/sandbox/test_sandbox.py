"""The sandbox's API: stdin in, verdicts out, the environment it gives a program, what it refuses
and the explicit opt-out, and each isolation this machine offers."""

import shutil
import sys

import pytest

from quantgate import sandbox as sb
from quantgate.runs import RunError
from quantgate.sandbox import IOTest, Limits, Sandbox, SandboxUnavailable, scrub_env
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
