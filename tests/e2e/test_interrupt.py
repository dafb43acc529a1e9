"""Ctrl-C stops a gate session while the chat client waits on a server that never answers.

A plain pytest subprocess (signals and pytester's in-process runs do not mix): the tiny suite's
lcb case against ``--server-url`` to the fake OpenAI server in ``hang`` mode, whose chat
requests never get an answer. One SIGINT once the requests are in flight must end the session
as an interrupted one (exit code 2, "KeyboardInterrupt"), with no process left over.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quantgate.serving.servers import Server, free_port
from tests.support import hear_sigint

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake_server.py"
pytestmark = pytest.mark.slow


def test_ctrl_c_stops_a_session_waiting_on_a_hanging_endpoint(tmp_path):
    port = free_port()
    fake = Server(
        [sys.executable, str(FAKE), "hang", "--port", str(port), "--served-model-name", "m"],
        port=port,
        served_model="m",
        log_path=tmp_path / "fake.log",
        startup_timeout=20,
    )
    with fake:
        session = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "accuracy and not benchmark",
                "--suite",
                "tiny",
                "--precision",
                "fp8",
                "-k",
                "lcb",
                f"--server-url={fake.base_url}",
                f"--quantgate-dir={tmp_path / 'qg'}",
                "-p",
                "no:cacheprovider",
            ],
            cwd=REPO,
            preexec_fn=hear_sigint,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            give_up = time.monotonic() + 300
            # the lcb case runs 2 requests at a time: both hang
            while fake.log_path.read_text().count("fake-server: chat request received") < 2:
                assert session.poll() is None, session.communicate()[0][-4000:]
                assert time.monotonic() < give_up, "no chat request within 300 s"
                time.sleep(0.2)
            time.sleep(0.5)
            children = psutil.Process(session.pid).children(recursive=True)
            session.send_signal(signal.SIGINT)
            try:
                out, _ = session.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("the session was still running 30 s after SIGINT")
        finally:
            if session.poll() is None:
                session.kill()
                session.communicate()
    assert session.returncode == 2, out[-4000:]  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out, out[-4000:]
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
