"""The shared chat client against injected faults: 500s, hangs, a server that dies, broken or
trickling HTTP, Retry-After, Ctrl-C.

Bounds like ``_within(20, ...)`` are liveness checks (the call ends at all), never speed
measurements: the deadlines under test are a few seconds, the bounds generous."""

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from quantgate.runs import Endpoint
from quantgate.serving.client import ChatClient, ChatRequest, ClientError
from quantgate.serving.servers import Server, free_port
from tests.support import hear_sigint

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake_server.py"


def _server(mode: str, tmp_path: Path, *args: str) -> Server:
    port = free_port()
    return Server(
        [sys.executable, str(FAKE), mode, "--port", str(port), "--served-model-name", "m", *args],
        port=port,
        served_model="m",
        log_path=tmp_path / f"{mode}.log",
        startup_timeout=20,
    )


def _client(server: Server, tmp_path: Path, **kw) -> ChatClient:
    kw = {
        "cache_path": tmp_path / "cache.sqlite",
        "identity": "org/m",
        "backoff": 0.01,
        "progress": False,
        **kw,
    }
    return ChatClient(Endpoint(server.base_url, "m"), **kw)


def _served(server: Server) -> int:
    return server.log_path.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def test_answers_come_back_in_order_and_from_the_cache_on_a_rerun(tmp_path):
    requests = [ChatRequest.user(f"q{i}", max_tokens=8, temperature=0) for i in range(12)]
    with _server("healthy", tmp_path) as server:
        first = _client(server, tmp_path, concurrency=4).complete(requests)
        assert [a.content for a in first] == [f"echo: q{i}" for i in range(12)]
        assert not any(a.cached for a in first) and _served(server) == 12
        again = _client(server, tmp_path).complete(requests)  # a new client: the file persists
        assert [a.content for a in again] == [a.content for a in first]
        assert all(a.cached for a in again) and _served(server) == 12
        # another checkpoint identity, or other parameters, is another request
        _client(server, tmp_path, identity="org/m-fp8").complete(requests[:1])
        _client(server, tmp_path).complete([ChatRequest.user("q0", max_tokens=9, temperature=0)])
        assert _served(server) == 14


def test_server_errors_are_retried_with_backoff(tmp_path):
    with _server("flaky", tmp_path) as server:  # every request fails twice with HTTP 500
        answers = _client(server, tmp_path, retries=3).complete(
            [ChatRequest.user("a"), ChatRequest.user("b")]
        )
        assert [a.content for a in answers] == ["echo: a", "echo: b"]
        with pytest.raises(ClientError, match=r"request 1 .* after 2 attempt\(s\): HTTP 500"):
            _client(server, tmp_path, retries=1).complete([ChatRequest.user("c")])


def test_a_bad_request_fails_at_once_with_the_servers_message(tmp_path):
    with _server("healthy", tmp_path) as server:
        client = ChatClient(
            Endpoint(server.base_url, "not-served"),
            cache_path=None,
            identity="x",
            backoff=5,
            progress=False,
        )
        started = time.monotonic()
        with pytest.raises(ClientError, match=r"after 1 attempt\(s\): HTTP 400: .*unknown model"):
            client.complete([ChatRequest.user("a")])
        assert time.monotonic() - started < 2  # no backoff for a 4xx


def test_a_hanging_server_times_out(tmp_path):
    with _server("hang", tmp_path) as server:
        with pytest.raises(ClientError, match=r"after 2 attempt\(s\): .*timed out"):
            _client(server, tmp_path, timeout=0.5, retries=1).complete([ChatRequest.user("a")])


def test_a_server_that_dies_fails_the_run_and_keeps_what_was_answered(tmp_path):
    with _server("healthy", tmp_path) as server:
        _client(server, tmp_path).complete([ChatRequest.user("kept")])
    with _server("die-on-chat", tmp_path) as server:
        client = _client(server, tmp_path, retries=1)
        with pytest.raises(ClientError, match=r"request 2 .*failed after 2 attempt"):
            client.complete([ChatRequest.user("kept"), ChatRequest.user("lost")])
        assert client.complete([ChatRequest.user("kept")])[0].cached


def _within(seconds: float, call):
    """``call()``'s result (or the exception it raised), provided it ends within ``seconds``."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome[0]


def _received(server: Server) -> int:
    return server.log_path.read_text().count("fake-server: chat request received")


def test_a_trickling_server_times_out_per_attempt(tmp_path):
    # one byte every 0.5 s: no single read ever times out, the attempt as a whole does
    with _server("trickle", tmp_path) as server:
        client = _client(server, tmp_path, timeout=1, retries=1)
        error = _within(20, lambda: client.complete([ChatRequest.user("a")]))
        assert isinstance(error, ClientError)
        assert re.search(r"request 1 .* after 2 attempt\(s\): .*timed out", str(error))


def test_the_deadline_bounds_every_attempt_and_backoff_together(tmp_path):
    with _server("trickle", tmp_path) as server:
        client = _client(server, tmp_path, timeout=60, retries=4, deadline=2)
        error = _within(20, lambda: client.complete([ChatRequest.user("a")]))
        assert isinstance(error, ClientError)
        assert re.search(r"request 1 .* after 1 attempt\(s\): .*timed out", str(error))
        assert "2 s deadline" in str(error)
    with _server("flaky", tmp_path) as server:  # HTTP 500 twice: the backoff would pass it
        client = _client(server, tmp_path, retries=4, backoff=30, deadline=2)
        error = _within(20, lambda: client.complete([ChatRequest.user("a")]))
        assert isinstance(error, ClientError)
        assert re.search(r"after 1 attempt\(s\): HTTP 500.*2 s deadline", str(error))


def test_retry_after_is_honoured(tmp_path):
    # a retry sooner than Retry-After is refused again; one retry must be enough
    with _server("retry-after", tmp_path, "--retry-after", "1") as server:
        answers = _client(server, tmp_path, retries=1).complete(
            [ChatRequest.user("a"), ChatRequest.user("b")]
        )
        assert [a.content for a in answers] == ["echo: a", "echo: b"]


def test_a_retry_after_beyond_the_deadline_fails_at_once(tmp_path):
    with _server("retry-after", tmp_path, "--retry-after", "3600") as server:
        client = _client(server, tmp_path, retries=4, deadline=2)
        error = _within(20, lambda: client.complete([ChatRequest.user("a")]))
        assert isinstance(error, ClientError)
        assert re.search(r"after 1 attempt\(s\): HTTP 429.*Retry-After: 3600", str(error))


def test_broken_http_answers_are_retried(tmp_path):
    # a non-HTTP line, a short body, a closed connection, then the answer
    with _server("broken-then-ok", tmp_path) as server:
        answers = _client(server, tmp_path, retries=3).complete(
            [ChatRequest.user("a"), ChatRequest.user("b")]
        )
        assert [a.content for a in answers] == ["echo: a", "echo: b"]


@pytest.mark.parametrize(
    ("mode", "error"), [("garbage", "BadStatusLine"), ("short-body", "IncompleteRead")]
)
def test_broken_http_fails_with_the_request_and_url(tmp_path, mode, error):
    with _server(mode, tmp_path) as server:
        url = re.escape(f"{server.base_url}/chat/completions")
        with pytest.raises(
            ClientError, match=rf"request 1 to {url} failed after 2 attempt\(s\): {error}"
        ):
            _client(server, tmp_path, retries=1).complete([ChatRequest.user("a")])


def test_a_failed_request_does_not_wait_for_its_siblings(tmp_path):
    # request 1 is refused at once while 2 and 3 hang (for an hour): the failure comes now
    with _server("hang", tmp_path) as server:
        client = _client(server, tmp_path, concurrency=3)
        requests = [ChatRequest.user("reject me"), ChatRequest.user("a"), ChatRequest.user("b")]
        error = _within(20, lambda: client.complete(requests))
        assert isinstance(error, ClientError)
        assert re.search(r"request 1 .* after 1 attempt\(s\): HTTP 400: .*rejected", str(error))


CTRL_C_SCRIPT = """
import sys
from quantgate.runs import Endpoint
from quantgate.serving.client import ChatClient, ChatRequest
client = ChatClient(Endpoint(sys.argv[1], "m"), cache_path=None, identity="x", concurrency=2,
                    backoff=float(sys.argv[2]), progress=False)
client.complete([ChatRequest.user(f"q{i}") for i in range(6)])
print("complete returned")
"""


@pytest.mark.parametrize(
    ("mode", "backoff"),
    [("hang", "1"), ("flaky", "3600")],
    ids=["requests-in-flight", "waiting-to-retry"],
)
def test_ctrl_c_stops_the_client(tmp_path, mode, backoff):
    """SIGINT ends the process as an uncaught KeyboardInterrupt does, though two requests hang
    (or wait an hour to retry) and four more are queued: no thread keeps the interpreter alive."""
    with _server(mode, tmp_path) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_SCRIPT, server.base_url, backoff],
            cwd=REPO,
            preexec_fn=hear_sigint,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            give_up = time.monotonic() + 60
            while _received(server) < 2:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < give_up, "the requests never arrived"
                time.sleep(0.1)
            time.sleep(0.5)  # both workers are now blocked in a read or in the backoff
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail("still running 20 s after SIGINT")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == -signal.SIGINT, (out, err)
    assert "KeyboardInterrupt" in err and "complete returned" not in out
