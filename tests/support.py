"""Plain test helpers (no fixtures: those live in the conftest.py files and may use these).

Imported as ``from tests.support import ...``: the root conftest.py puts the repository on
``sys.path`` and ``tests`` is a namespace package (no ``__init__.py``).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from quantgate.runs import Endpoint

REPO = Path(__file__).resolve().parents[1]
LIVEBENCH_FIXTURES = REPO / "tests" / "fixtures" / "livebench"


# -- a child process that hears Ctrl-C ----------------------------------------------------------


def hear_sigint() -> None:
    """``preexec_fn`` for a child a test sends SIGINT: the signal's default disposition, as a
    terminal's foreground job has. A shell without job control starts a background job
    (``pytest &``, nohup scripts) with SIGINT ignored, a child inherits that, and Python keeps
    it ignored, so the test would wait on a process that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- an in-process chat server ------------------------------------------------------------------


class ScriptedChat:
    """An in-process chat endpoint answering each request with ``reply(body) -> str`` and keeping
    every request body in ``bodies``: for runner tests that need replies the tiny model cannot
    give (think traces, truncations, code). The real chain runs in tests/e2e. ``reply`` may
    return a dict instead: ``content`` and what the server says about it, ``finish_reason``
    (default "stop"; None sends null) and ``completion_tokens`` (default: the words)."""

    def __init__(self, reply: Callable[[dict], str], model: str = "fake") -> None:
        self.reply, self.model, self.bodies = reply, model, []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - /v1/models
                self._send({"object": "list", "data": [{"id": chat.model, "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802 - /v1/chat/completions
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.bodies.append(body)
                said = chat.reply(body)
                said = said if isinstance(said, dict) else {"content": said}
                content = said["content"]
                self._send(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": said.get("finish_reason", "stop"),
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {
                            "completion_tokens": said.get("completion_tokens", len(content.split()))
                        },
                    }
                )

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # a short poll: close() (httpd.shutdown) waits up to one poll interval
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def endpoint(self, model: str | None = None, **fields) -> Endpoint:
        return Endpoint(self.base_url, model or self.model, **{"checkpoint": "org/fake", **fields})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the tiny LiveBench fixture: its replies and suite files ------------------------------------


def tiny_reply(user_text: str) -> str:
    """What the tiny model says to the tiny LiveBench fixture: the right answer, from its own
    question files (``Question: ...\\nAnswer:`` prompts)."""
    for name in ("arith", "words"):
        for line in (LIVEBENCH_FIXTURES.parent / "tiny" / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            if user_text == f"Question: {row['question']}\nAnswer:":
                answer = row["answer"]
                return f"The answer is {answer}." if answer.lstrip("-").isdigit() else answer
    return "I do not know."


def write_suite(folder: Path, name: str = "lb", **task) -> Path:
    """A one-task suite file whose ``livebench`` task is the tiny fixture plus ``task`` keys."""
    spec = {
        "runner": "livebench",
        "release": "2024-11-25",
        "questions_dir": str(LIVEBENCH_FIXTURES / "tiny"),
        "num_concurrent": 4,
        "scorer": "quantgate.tasks.scoring:livebench_tiny_score",
        **task,
    }
    suite = {
        "model": "m",
        "precisions": {"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
        "generation": {"max_gen_toks": 32, "seed": 7},
        "tasks": {"livebench": spec},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# -- pytester gate projects (tests/plugin) ------------------------------------------------------

DEMO_SUITE = """
model: demo-model
reference: bf16
precisions:
  bf16: {checkpoint: org/demo}
  fp8: {checkpoint: org/demo-fp8}
  nvfp4: {checkpoint: org/demo-nvfp4}
generation: {temperature: 0.0, max_gen_toks: 8}
tasks:
  alpha:
    lmeval_task: demo_alpha
    metric: "acc,none"
    gate: {method: paired, margin: 0.05}
  beta:
    lmeval_task: demo_beta
    metric: "acc,none"
    gate: {method: paired, margin: 0.05}
"""
"""A two-task, three-precision suite whose ``evaluate`` a demo conftest overrides."""

GATE_PLUGINS = (
    'pytest_plugins = ["plugins.options", "plugins.cases", "plugins.fixtures", '
    '"plugins.decision", "plugins.summary", "plugins.progress"]\n'
)
"""A demo conftest's plugins: the repository's, without the throughput cases."""

GATE_TEST = """
import pytest
pytestmark = pytest.mark.accuracy

def test_benchmark(accuracy_case, evaluate, baseline):
    baseline.check(accuracy_case, evaluate(accuracy_case))
"""
"""A demo project's gate test file, as tests/accuracy/test_benchmarks.py."""

THROUGHPUT_TEST = """
import pytest
pytestmark = [pytest.mark.accuracy, pytest.mark.benchmark]

def test_throughput(throughput_case, throughput, benchmark):
    bench = throughput(throughput_case)
    benchmark.group = f"throughput {throughput_case.suite}"
    benchmark.pedantic(bench.round, rounds=bench.rounds, iterations=1)
    bench.finish(benchmark)
"""
"""A demo project's throughput test file, as tests/accuracy/test_throughput.py."""

DEMO_INI = """
[pytest]
addopts = -m "not accuracy" -p no:cacheprovider
markers =
    accuracy: gate cases
"""
"""A demo project's pytest.ini: plain ``pytest`` deselects the gate, as the repository's does."""
