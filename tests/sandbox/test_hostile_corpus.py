"""The hostile corpus (tests/fixtures/hostile/) run in the real sandbox; every assertion is about
the HOST: sentinel files untouched and nothing created beside them, the listeners got no
connection, nothing left in the run's PID namespace, the canary process alive, no secret in the
program's output.

The sandbox must be available here (Linux with util-linux's unshare, or bubblewrap): on a machine
without any isolation these tests fail with the sandbox's own message rather than skip, so CI
cannot silently stop testing containment.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from quantgate.sandbox import Limits, Sandbox, processes_in_namespace

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
)
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
}
SLOW = {"fork_bomb", "infinite_loop", "sleeping_children"}  # they run into the wall-clock limit

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the sandbox uses Linux namespaces"
)


def test_the_corpus_is_complete():
    assert {p.stem for p in CORPUS.glob("*.py")} == set(EXPECTED)
    assert len(EXPECTED) >= 12


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Targets on the host: sentinels in the repo, in a /tmp sibling and in a home directory,
    TCP and unix listeners, a canary process."""
    qg = REPO / ".quantgate"
    repo_dir = Path(tempfile.mkdtemp(prefix="hostile-", dir=qg.mkdir(exist_ok=True) or qg))
    home = Path(tempfile.mkdtemp(prefix="hostile-home-", dir=qg))
    tmp_dir = Path(tempfile.mkdtemp(prefix="quantgate-hostile-", dir="/tmp"))
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
    canary = subprocess.Popen(["sleep", "600"])
    yield {
        "repo_dir": repo_dir,
        "home": home,
        "tmp_dir": tmp_dir,
        "tcp": tcp,
        "unix": unix,
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
        },
    }
    canary.kill()
    canary.wait()
    tcp.close()
    unix.close()
    for path in (repo_dir, home, tmp_dir):
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
    before = _snapshot(host["repo_dir"], host["tmp_dir"], host["home"])
    box = Sandbox(limits=LIMITS)
    assert box.isolation != "none"
    source = (CORPUS / f"{program}.py").read_text()
    run = box.run(
        {"main.py": source},
        ["main.py"],
        stdin=json.dumps(host["targets"]),
        env={"HF_TOKEN": SECRET, "SAFE_SETTING": "1"},
    )

    if EXPECTED[program] is not None:
        assert run.status in EXPECTED[program], (run.status, run.limit, run.stderr[-1500:])
    assert run.isolation == box.isolation
    # nothing changed, nothing created, nothing deleted on the host
    assert _snapshot(host["repo_dir"], host["tmp_dir"], host["home"]) == before, run.stdout
    # no connection reached the host's listeners
    for listener in (host["tcp"], host["unix"]):
        with pytest.raises(BlockingIOError):
            listener.accept()
    # the PID namespace is empty: daemons, setsid escapees and sleeping children are gone
    assert run.pidns is not None and run.pidns != _own_pidns()
    assert processes_in_namespace(run.pidns) == []
    assert host["canary"].poll() is None, "the canary process was killed"
    # no credential reached the program
    assert SECRET not in run.stdout + run.stderr
    assert len(run.stdout.encode()) <= LIMITS.output_bytes


def _own_pidns() -> str:
    return os.readlink("/proc/self/ns/pid")


def test_outputs_show_the_attempts_failed(host, monkeypatch):
    """The corpus really tries: the writes are refused inside (read-only or hidden paths)."""
    monkeypatch.setenv("HOME", str(host["home"]))
    run = Sandbox(limits=LIMITS).run(
        {"main.py": (CORPUS / "write_outside.py").read_text()},
        ["main.py"],
        stdin=json.dumps(host["targets"]),
    )
    assert run.status == "ok", run.stderr
    assert "refused" in run.stdout and "\nwrote " not in "\n" + run.stdout, run.stdout
    run = Sandbox(limits=LIMITS).run(
        {"main.py": (CORPUS / "connect_localhost.py").read_text()},
        ["main.py"],
        stdin=json.dumps(host["targets"]),
    )
    assert "connected" not in run.stdout, run.stdout
