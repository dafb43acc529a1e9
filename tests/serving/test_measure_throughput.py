"""quantgate.serving.throughput: measuring against the fake server, failures, plans, the relative
table."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

import quantgate.serving.throughput
from quantgate.config import Suite
from quantgate.report import relative_speed_table
from quantgate.runs import Endpoint
from quantgate.serving.servers import Server, free_port
from quantgate.serving.throughput import (
    DEFAULT_PROMPTS,
    ThroughputError,
    ThroughputResult,
    measure_throughput,
    plan_throughput,
)
from quantgate.suites import load_suite

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake_server.py"


@pytest.fixture(scope="module")
def fake_endpoint(tmp_path_factory):
    port = free_port()
    argv = [
        sys.executable,
        str(FAKE),
        "healthy",
        "--port",
        str(port),
        "--served-model-name",
        "fake",
    ]
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    with Server(argv, port=port, served_model="fake", log_path=log, startup_timeout=20) as server:
        yield Endpoint(server.base_url, "fake")


def test_measures_the_fake_server(fake_endpoint):
    result = measure_throughput(
        fake_endpoint, prompts=["a", "b", "c"], requests=10, max_tokens=4, concurrency=3
    )
    # the fake server reports usage {"prompt_tokens": 1, "completion_tokens": 1} per answer
    assert (result.requests, result.concurrency, result.max_tokens) == (10, 3, 4)
    assert (result.completion_tokens, result.prompt_tokens) == (10, 10)
    assert len(result.latencies_s) == 10 and all(x > 0 for x in result.latencies_s)
    assert 0 < max(result.latencies_s) <= result.elapsed_s
    assert result.tokens_per_s == pytest.approx(10 / result.elapsed_s)
    assert result.requests_per_s == pytest.approx(10 / result.elapsed_s)
    assert result.summary()["requests"] == 10 and result.summary()["concurrency"] == 3


def test_a_model_the_server_does_not_serve_fails_with_the_answer(fake_endpoint):
    wrong = Endpoint(fake_endpoint.base_url, "not-served")
    with pytest.raises(ThroughputError, match=r"request 1/2 .* returned HTTP 400: .*unknown model"):
        measure_throughput(wrong, prompts=["x"], requests=2, max_tokens=1, concurrency=1)


def test_an_unreachable_server_fails():
    nowhere = Endpoint(f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(
        ThroughputError,
        match=r"request \d+/3 to http://127.0.0.1:\d+/v1/chat/"
        r"completions failed",
    ):
        measure_throughput(
            nowhere, prompts=["x"], requests=3, max_tokens=1, concurrency=2, timeout=5
        )


class FakeHTTP:
    """Stands in for ``http_json``: records payloads and in-flight counts, answers by script."""

    def __init__(self, answer=None, delay: float = 0.0) -> None:
        self.payloads: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.delay = delay
        self.answer = answer or (
            lambda n, payload: (200, {"usage": {"completion_tokens": 7, "prompt_tokens": 3}})
        )

    def __call__(self, url, payload=None, *, timeout=5.0):
        with self.lock:
            self.payloads.append(payload)
            n = len(self.payloads)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        return self.answer(n, payload)


ENDPOINT = Endpoint("http://127.0.0.1:9/v1", "served-name")


def test_requests_cycle_the_prompts_with_the_settings_and_concurrency(monkeypatch):
    http = FakeHTTP(delay=0.02)
    monkeypatch.setattr(quantgate.serving.throughput, "http_json", http)
    result = measure_throughput(
        ENDPOINT,
        prompts=["p0", "p1", "p2"],
        requests=7,
        max_tokens=32,
        concurrency=3,
        temperature=0.5,
        extra_body={"ignore_eos": True, "seed": 1},
    )
    assert result.completion_tokens == 49 and result.prompt_tokens == 21
    prompts = sorted(p["messages"][0]["content"] for p in http.payloads)
    assert prompts == ["p0", "p0", "p0", "p1", "p1", "p2", "p2"]
    first = http.payloads[0]
    assert first["model"] == "served-name" and first["max_tokens"] == 32
    assert first["temperature"] == 0.5 and first["stream"] is False
    assert first["ignore_eos"] is True and first["seed"] == 1
    assert http.most_in_flight == 3


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ({"choices": [{"message": {"content": "hi"}}]}, "usage=None"),
        ({"usage": {"prompt_tokens": 3}}, "usage={'prompt_tokens': 3}"),
        ({"usage": {"completion_tokens": "7"}}, "usage={'completion_tokens': '7'}"),
        ("not json at all", "usage=None"),
    ],
)
def test_an_answer_without_completion_tokens_fails(monkeypatch, body, found):
    monkeypatch.setattr(
        quantgate.serving.throughput, "http_json", FakeHTTP(lambda n, p: (200, body))
    )
    with pytest.raises(ThroughputError, match="has no usage.completion_tokens") as info:
        measure_throughput(ENDPOINT, prompts=["x"], requests=2, max_tokens=1, concurrency=1)
    assert found in str(info.value)


def test_the_first_failure_stops_the_run(monkeypatch):
    http = FakeHTTP(
        lambda n, p: (
            (500, "boom: out of memory") if n == 3 else (200, {"usage": {"completion_tokens": 1}})
        )
    )
    monkeypatch.setattr(quantgate.serving.throughput, "http_json", http)
    with pytest.raises(ThroughputError, match=r"request 3/20 .* returned HTTP 500: boom: out of"):
        measure_throughput(ENDPOINT, prompts=["x"], requests=20, max_tokens=1, concurrency=1)
    assert len(http.payloads) == 3  # the rest were cancelled, not sent


@pytest.mark.parametrize(
    "kwargs", [dict(prompts=[]), dict(requests=0), dict(max_tokens=0), dict(concurrency=0)]
)
def test_bad_arguments(kwargs):
    args = dict(prompts=["x"], requests=1, max_tokens=1, concurrency=1) | kwargs
    with pytest.raises(ValueError):
        measure_throughput(ENDPOINT, **args)


def test_default_prompts_are_a_fixed_varied_set():
    assert len(DEFAULT_PROMPTS) == 16 and len(set(DEFAULT_PROMPTS)) == 16
    assert all(5 < len(p) < 80 for p in DEFAULT_PROMPTS)


# --- results -----------------------------------------------------------------------------------


def test_combine_and_records():
    a = ThroughputResult(8, 2, 32, 2.0, 256, 40, (0.5,) * 8)
    b = ThroughputResult(8, 2, 32, 6.0, 256, 40, (1.5,) * 8)
    both = ThroughputResult.combine([a, b])
    assert (both.requests, both.completion_tokens, both.rounds) == (16, 512, 2)
    assert both.tokens_per_s == pytest.approx(64.0) and both.requests_per_s == pytest.approx(2.0)
    assert both.mean_latency_s == pytest.approx(1.0) and both.p90_latency_s == 1.5
    assert ThroughputResult.from_record(both.to_record()) == both
    with pytest.raises(ValueError):
        ThroughputResult.combine([])


def test_relative_speed_table():
    results = {
        "bf16": ThroughputResult(16, 2, 32, 4.0, 512),
        "fp8": ThroughputResult(16, 2, 32, 2.0, 512),
        "nvfp4": ThroughputResult(16, 2, 32, 8.0, 256),
    }
    lines = relative_speed_table(results, "bf16").splitlines()
    assert lines[0].endswith("tok/s vs bf16  req/s vs bf16")
    assert lines[2].split()[0] == "bf16" and lines[2].endswith("100.0 %        100.0 %")
    assert lines[3].endswith("200.0 %        200.0 %")
    assert lines[4].endswith("25.0 %         50.0 %")
    without = relative_speed_table({"fp8": results["fp8"]}, "bf16")
    assert without.splitlines()[2].split()[-2:] == ["-", "-"]


# --- plans from suites -------------------------------------------------------------------------


def _suite(throughput: dict | None, **extra) -> Suite:
    data = {
        "model": "m",
        "precisions": {"bf16": {"checkpoint": "org/m"}},
        "tasks": {"t": {"lmeval_task": "x", "metric": "acc,none"}},
        **extra,
    }
    if throughput is not None:
        data["throughput"] = throughput
    return Suite(name="demo", **data)


def test_plan_defaults_and_fallbacks():
    plan = plan_throughput(_suite({}), "transformers")
    assert (plan.requests, plan.max_tokens, plan.concurrency, plan.rounds) == (32, 128, 8, 1)
    assert plan.prompts == DEFAULT_PROMPTS and plan.extra_body == {} and plan.temperature == 0.0
    vllm = plan_throughput(
        _suite(
            {"prompts": ["only"]},
            engine={"vllm": {"max_num_seqs": 24}},
            generation={"chat_template_kwargs": {"enable_thinking": False}},
        ),
        "vllm",
    )
    assert vllm.concurrency == 24 and vllm.prompts == ("only",)
    assert vllm.extra_body == {
        "ignore_eos": True,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    assert (
        plan_throughput(
            _suite({"concurrency": 3}, engine={"vllm": {"max_num_seqs": 24}}), "vllm"
        ).concurrency
        == 3
    )
    assert plan_throughput(_suite({"requests": 16}), "external", limit=5).requests == 5
    with pytest.raises(ValueError, match="no throughput: section"):
        plan_throughput(_suite(None), "vllm")


def test_tiny_suite_has_a_small_throughput_section():
    suite = load_suite(REPO / "tests" / "accuracy" / "suites" / "tiny.yaml")
    plan = plan_throughput(suite, "transformers")
    assert (plan.requests, plan.max_tokens, plan.concurrency) == (16, 32, 2)
