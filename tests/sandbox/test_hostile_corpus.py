"""The hostile corpus (tests/fixtures/hostile/) run in the real sandbox; every assertion is about
the HOST: sentinel files untouched and nothing created beside them, the listeners got no
connection, nothing left in the run's PID namespace, the canary process alive, no secret in the
program's output. The targets sit where the old deny-list sandbox hid them (/tmp, a home) and
where it did not (a /srv-like directory, the repository checkout). A few programs also report
what the kernel let them do (memory held, files made, capability sets); those reports are
checked against the run's limits.

The sandbox must be available here (Linux with util-linux's unshare, or bubblewrap): on a machine
without any isolation these tests fail with the sandbox's own message rather than skip, so CI
cannot silently stop testing containment.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from quantgate.sandbox import Limits, Sandbox, processes_in_namespace
from quantgate.sandbox.command import seccomp_arch

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "hostile"
SECRET = f"qg-secret-{uuid.uuid4().hex}"
LIMITS = Limits(
    wall_seconds=3,
    cpu_seconds=2,
    memory_mb=512,
    processes=16,
    open_files=32,
    file_size_mb=1,
    output_bytes=64 << 10,
    workdir_mb=8,
    workdir_inodes=1024,
    memory_total_mb=8 * 512,  # room for the process-spawning programs (daemons, children)
)
# programs that measure a memory bound run with small limits of their own
SMALL = dict(memory_mb=128, file_size_mb=64, open_files=64)
LIMITS_FOR = {
    "memfd_hog": dataclasses.replace(LIMITS, **SMALL, memory_total_mb=None),
    "fork_hog": dataclasses.replace(LIMITS, **SMALL, memory_total_mb=256),
}
# program -> the status its run must end with (None: any; containment is what is checked)
EXPECTED = {
    "fork_bomb": {"timeout", "limit_exceeded"},
    "infinite_loop": {"timeout"},
    "memory_hog": {"limit_exceeded"},
    "huge_output": {"limit_exceeded"},
    "disk_filler": {"limit_exceeded"},
    "sleeping_children": {"timeout"},
    "write_outside": {"ok"},
    "delete_files": {"ok"},
    "read_secrets": {"ok"},
    "connect_localhost": {"ok"},
    "daemon": {"ok"},
    "kill_parent": None,
    "ctypes_bypass": {"ok"},
    "posix_bypass": {"ok"},
    "namespace_escape": {"ok"},
    "read_outside": {"ok"},
    "connect_unix_outside": {"ok"},
    "memfd_hog": {"ok", "limit_exceeded"},
    "fork_hog": {"ok", "limit_exceeded"},
    "inode_flood": {"limit_exceeded"},
    "capabilities": {"ok"},
    "init_marker": {"ok"},
    "fake_status": {"runtime_error"},
}
SLOW = {"fork_bomb", "infinite_loop", "sleeping_children"}  # they run into the wall-clock limit
SPAWNING = {"daemon", "sleeping_children"}  # they need more than one process to do their worst

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the sandbox uses Linux namespaces"
)


def test_the_corpus_is_complete():
    assert {p.stem for p in CORPUS.glob("*.py")} == set(EXPECTED)
    assert len(EXPECTED) >= 12


def _outside_dir() -> Path:
    """A fresh world-readable directory outside /tmp, /var/tmp, /run and the homes: where a CI
    checkout, an HF_HOME or a service's socket may live (/srv, /var/lib or /opt; for a user
    who may write none of them, the checkout's .quantgate/)."""
    parent = next((p for p in ("/srv", "/var/lib", "/opt") if os.access(p, os.W_OK)), None)
    path = Path(tempfile.mkdtemp(prefix="quantgate-hostile-", dir=parent or REPO / ".quantgate"))
    path.chmod(0o755)
    return path


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    path.chmod(0o777)
    sock.listen()
    sock.setblocking(False)
    return sock


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Targets on the host: sentinels in the repo, in a /tmp sibling and in a home directory,
    world-readable secrets and 0777 unix sockets outside the old hidden directories (a /srv-like
    directory, the checkout), TCP and unix listeners, a canary process."""
    qg = REPO / ".quantgate"
    qg.mkdir(exist_ok=True)
    repo_dir = Path(tempfile.mkdtemp(prefix="hostile-", dir=qg))
    repo_dir.chmod(0o755)
    home = Path(tempfile.mkdtemp(prefix="hostile-home-", dir=qg))
    tmp_dir = Path(tempfile.mkdtemp(prefix="quantgate-hostile-", dir="/tmp"))
    outside = _outside_dir()
    (outside / "hf").mkdir(mode=0o755)
    (outside / "hf" / "token").write_text(SECRET + "-hf-home\n")
    (outside / ".env").write_text(f"OPENAI_API_KEY={SECRET}-dotenv\n")
    (repo_dir / ".env").write_text(f"HF_TOKEN={SECRET}-checkout\n")
    for path in (outside / "hf" / "token", outside / ".env", repo_dir / ".env"):
        path.chmod(0o644)
    repo_files = [REPO / "pyproject.toml", REPO / "tests" / "fixtures" / "tiny" / "code_lcb.jsonl"]
    (repo_dir / "sentinel.txt").write_text("repo sentinel\n")
    (tmp_dir / "sentinel.txt").write_text("tmp sentinel\n")
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text(SECRET + "-file\n")
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.setblocking(False)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_dir / "sock"))
    unix.listen()
    unix.setblocking(False)
    outside_unix, repo_unix = _listen(outside / "sock"), _listen(repo_dir / "sock")
    canary = subprocess.Popen(["sleep", "600"])
    yield {
        "repo_dir": repo_dir,
        "home": home,
        "tmp_dir": tmp_dir,
        "outside": outside,
        "listeners": (tcp, unix, outside_unix, repo_unix),
        "repo_digests": [hashlib.sha256(p.read_bytes()).hexdigest() for p in repo_files],
        "canary": canary,
        "targets": {
            "repo_sentinel": str(repo_dir / "sentinel.txt"),
            "tmp_sentinel": str(tmp_dir / "sentinel.txt"),
            "tmp_dir": str(tmp_dir),
            "home": str(home),
            "home_secret": str(home / ".cache/huggingface/token"),
            "port": tcp.getsockname()[1],
            "unix_socket": str(tmp_dir / "sock"),
            "canary_pid": canary.pid,
            "outside_dir": str(outside),
            "outside_secret": str(outside / "hf" / "token"),
            "outside_env": str(outside / ".env"),
            "outside_socket": str(outside / "sock"),
            "repo_root": str(REPO),
            "repo_secret": str(repo_dir / ".env"),
            "repo_socket": str(repo_dir / "sock"),
            "repo_files": [str(p) for p in repo_files],
        },
    }
    canary.kill()
    canary.wait()
    for listener in (tcp, unix, outside_unix, repo_unix):
        listener.close()
    for path in (repo_dir, home, tmp_dir, outside):
        shutil.rmtree(path, ignore_errors=True)


def _snapshot(*dirs: Path) -> dict:
    return {
        str(p): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
        for d in dirs
        for p in sorted(d.rglob("*"))
        if not p.is_socket()
    }


@pytest.mark.parametrize(
    "program",
    [pytest.param(p, marks=pytest.mark.slow) if p in SLOW else p for p in sorted(EXPECTED)],
)
def test_hostile_program_is_contained(program, host, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("https_proxy", f"http://{SECRET}@proxy:3128")
    monkeypatch.setenv("HOME", str(host["home"]))
    watched = (host["repo_dir"], host["tmp_dir"], host["home"], host["outside"])
    before = _snapshot(*watched)
    limits = LIMITS_FOR.get(program, LIMITS)
    box = Sandbox(limits=limits)
    assert box.isolation != "none"
    run = _run(program, host, limits, env={"HF_TOKEN": SECRET, "SAFE_SETTING": "1"})

    expected = EXPECTED[program]
    if program in SPAWNING and _one_process_only(run):
        expected = {"limit_exceeded"}  # its first fork is refused
    if expected is not None:
        assert run.status in expected, (run.status, run.limit, run.stderr[-1500:])
    assert run.isolation == box.isolation
    # nothing changed, nothing created, nothing deleted on the host
    assert _snapshot(*watched) == before, run.stdout
    # no connection reached the host's listeners (TCP, unix sockets in /tmp, /srv, the checkout)
    assert [_drain(listener) for listener in host["listeners"]] == [0, 0, 0, 0]
    # the PID namespace is empty: daemons, setsid escapees and sleeping children are gone
    assert run.pidns is not None and run.pidns != _own_pidns()
    assert processes_in_namespace(run.pidns) == []
    assert host["canary"].poll() is None, "the canary process was killed"
    # no credential reached the program, nor any byte of the checkout's files
    assert SECRET not in run.stdout + run.stderr
    assert not any(digest in run.stdout for digest in host["repo_digests"]), run.stdout
    assert len(run.stdout.encode()) <= limits.output_bytes
    assert run.memory_bound in ("cgroup", "rlimit+seccomp")


def _one_process_only(run) -> bool:
    """bwrap started by root runs the program as root, to which RLIMIT_NPROC does not apply:
    without a cgroup the sandbox then allows one process, whatever the budget."""
    return run.memory_bound != "cgroup" and run.isolation == "bwrap" and os.geteuid() == 0


def _drain(listener: socket.socket) -> int:
    """How many connections were waiting (all accepted and closed: the next test starts clean)."""
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def _own_pidns() -> str:
    return os.readlink("/proc/self/ns/pid")


def _run(program, host, limits=LIMITS, env=None):
    return Sandbox(limits=limits).run(
        {"main.py": (CORPUS / f"{program}.py").read_text()},
        ["main.py"],
        stdin=json.dumps({**host["targets"], "memory_mb": limits.memory_mb}),
        env=env,
    )


def _bound_mb(limits: Limits) -> int:
    """What the whole run may hold: its memory budget plus its working directory."""
    return (limits.memory_total_mb or limits.memory_mb) + limits.workdir_mb


def test_memory_outside_the_address_space_stays_within_the_run_bound(host):
    """memfds, SysV shared memory and a nested tmpfs: RLIMIT_AS counts none of them."""
    limits = LIMITS_FOR["memfd_hog"]
    run = _run("memfd_hog", host, limits)
    held = dict(re.findall(r"^held (\w+) (\d+)$", run.stdout, re.M))
    if seccomp_arch():  # refused outright by the seccomp filter, with or without a cgroup
        assert run.status == "ok", run.stderr[-500:]
        assert held == {"memfds": "0", "sysv_shm": "0", "nested_tmpfs": "0"}, run.stdout
        assert "memfd refused 1" in run.stdout and "shmget refused 1" in run.stdout
        assert "unshare refused 1" in run.stdout
    else:  # a cgroup charges them to the run (OOM-killed at memory.max); rlimits alone do not
        assert run.memory_bound == "cgroup", "no bound on memfds here"
    assert all(int(mb) <= _bound_mb(limits) for mb in held.values()), run.stdout


def test_processes_times_address_space_stays_within_the_run_bound(host):
    limits = LIMITS_FOR["fork_hog"]
    run = _run("fork_hog", host, limits)
    assert run.status in ("ok", "limit_exceeded"), run.stderr[-500:]
    found = re.search(r"^held (\d+) MiB in (\d+) children$", run.stdout, re.M)
    held, children = (int(g) for g in found.groups()) if found else (0, 0)
    assert held <= _bound_mb(limits), run.stdout
    if _one_process_only(run):
        assert children == 0, run.stdout
    if run.memory_bound != "cgroup":  # every process may use RLIMIT_AS: their number is capped
        assert (children + 1) * limits.memory_mb <= limits.memory_total_mb, run.stdout


def test_the_working_directory_caps_inodes(host):
    run = _run("inode_flood", host)
    assert (run.status, run.limit) == ("limit_exceeded", "workdir"), run.stdout + run.stderr
    files = int(re.search(r"^files (\d+)$", run.stdout, re.M).group(1))
    assert 0 < files <= LIMITS.workdir_inodes


def test_no_capability_is_left_and_the_seccomp_filter_is_on(host):
    run = _run("capabilities", host)
    assert run.status == "ok", run.stderr
    status = dict(line.split(":\t") for line in run.stdout.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name], 16) == 0, (name, run.stdout)
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2"), run.stdout
    assert "bounding []" in run.stdout


def test_the_program_cannot_speak_for_the_init(host):
    """The init's failure marker on stderr and forged status lines stay the program's output."""
    run = _run("init_marker", host)
    assert (run.status, run.stdout) == ("ok", "42\n"), run.stderr
    assert "cannot start the program" in run.stderr
    run = _run("fake_status", host)
    assert (run.status, run.exit_code) == ("runtime_error", 3), run.stdout + run.stderr
    assert "wrote" not in run.stdout, run.stdout


def test_nothing_outside_the_allow_list_is_visible(host):
    run = _run("read_outside", host)
    assert run.status == "ok", run.stderr
    t = host["targets"]
    for path in (*t["repo_files"], t["outside_secret"], t["outside_env"], t["repo_secret"]):
        assert f"unreadable {path} 2" in run.stdout, run.stdout  # ENOENT: not there at all
    for directory in (t["outside_dir"], str(host["repo_dir"])):
        assert f"unlistable {directory} 2" in run.stdout, run.stdout
    # of the checkout only the virtualenv, where the interpreter lives there, is bound in
    venv = Path(sys.prefix).resolve()
    bound = [venv.relative_to(REPO).parts[0]] if venv.is_relative_to(REPO) else []
    listed = re.search(rf"^(?:listed|unlistable) {re.escape(str(REPO))} (.*)$", run.stdout, re.M)
    assert listed and listed.group(1) in (str(sorted(bound)), "2"), run.stdout
    run = _run("connect_unix_outside", host)
    assert "connected" not in run.stdout, run.stdout


def test_outputs_show_the_attempts_failed(host, monkeypatch):
    """The corpus really tries: the writes are refused inside (read-only or hidden paths)."""
    monkeypatch.setenv("HOME", str(host["home"]))
    run = _run("write_outside", host)
    assert run.status == "ok", run.stderr
    assert "refused" in run.stdout and "\nwrote " not in "\n" + run.stdout, run.stdout
    run = _run("connect_localhost", host)
    assert "connected" not in run.stdout, run.stdout
