"""The shared chat client against injected faults: 500s, hangs, a server that dies."""

import sys
import time
from pathlib import Path

import pytest

from quantgate.runs import Endpoint
from quantgate.serving.client import ChatClient, ChatRequest, ClientError
from quantgate.serving.servers import Server, free_port

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_server.py"


def _server(mode: str, tmp_path: Path) -> Server:
    port = free_port()
    return Server(
        [sys.executable, str(FAKE), mode, "--port", str(port), "--served-model-name", "m"],
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
