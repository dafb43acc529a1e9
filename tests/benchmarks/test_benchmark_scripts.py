"""benchmarks/: the throughput script end to end against the scripted fake server (a real HTTP
server in its own process), and the H200 driver's loop with that server in vLLM's place.

What they show: every client sends the same requests and gets them all answered, the records
and tables say what was measured, the noise floor compares two runs, the driver records what it
ran, skips what would overrun its budget, and writes its files. Not throughput: the fake server
answers at once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantgate.serving.engines import ServerPlan
from quantgate.serving.servers import Server, free_port, models_include

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake_server.py"
SCRIPT = REPO / "benchmarks" / "throughput.py"


def _module(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _fake_argv(port: int, model: str = "fake", mode: str = "healthy") -> list[str]:
    return [sys.executable, str(FAKE), mode, "--port", str(port), "--served-model-name", model]


@pytest.fixture
def fake_server(tmp_path):
    port = free_port()
    server = Server(
        _fake_argv(port),
        port=port,
        served_model="fake",
        log_path=tmp_path / "fake.log",
        startup_timeout=30,
        ready_checks=[models_include()],
    )
    with server:
        yield server


def test_prompts_are_distinct_and_fewshot_prompts_share_their_group_prefix():
    tp = _module("quantgate_benchmarks_throughput", SCRIPT)
    counter = tp.TokenCounter()  # no tokenizer: ~1.3 tokens a word
    unique = tp.make_prompts(6, 300, counter)
    assert len(set(unique)) == 6 and all(p.startswith(f"[{i}] ") for i, p in enumerate(unique))
    assert unique == tp.make_prompts(6, 300, counter)  # seeded: the same on every machine
    assert {len(p.split()) for p in unique} == {round(300 / 1.3)}
    few = tp.make_prompts(
        6, 300, counter, workload="fewshot", shared_prefix_tokens=200, prefix_groups=2
    )
    prefix = [p.split("\n\nQuestion")[0] for p in few]
    assert prefix[0] == prefix[2] == prefix[4] != prefix[1] == prefix[3] == prefix[5]
    assert len(set(few)) == 6
    with pytest.raises(ValueError, match="shared-prefix"):
        tp.make_prompts(2, 100, counter, workload="fewshot", shared_prefix_tokens=100)


def test_markdown_table_compares_requests_per_second_with_the_direct_client():
    tp = _module("quantgate_benchmarks_throughput", SCRIPT)
    row = {
        "label": "s",
        "workload": "unique",
        "concurrency": 8,
        "requests": 16,
        "prompt_tokens_per_s": None,
        "mean_latency_s": None,
        "tokens_source": "usage",
    }
    records = [
        {**row, "client": "direct", "tokens_per_s": 100.0, "requests_per_s": 2.0},
        {**row, "client": "lmeval", "tokens_per_s": 90.0, "requests_per_s": 1.8},
        {
            "kind": "noise_floor",
            "label": "s",
            "concurrency": 8,
            "requests": 16,
            "compared": "token ids",
            "identical": 15,
            "differing": 1,
            "first_divergence_median": 40,
            "first_divergence_min": 40,
        },
    ]
    table = tp.markdown_table(records)
    assert "| s | unique | lmeval | 8 | 16 | 90.0 | 1.8 | - | 0.90 | - | usage |" in table
    assert "| s | 8 | 16 | token ids | 15 | 1 | 40 / 40 |" in table


def test_the_script_measures_all_three_clients_and_the_noise_floor(fake_server, tmp_path):
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--base-url", fake_server.base_url,
            "--concurrency", "2,4", "--requests", "6,8", "--prompt-tokens", "120",
            "--max-tokens", "16", "--noise-floor", "4:8", "--label", "fake", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())
    runs = [r for r in records if r.get("kind") != "noise_floor"]
    assert [(r["client"], r["concurrency"], r["requests"]) for r in runs] == [
        ("direct", 2, 6), ("chatclient", 2, 6), ("lmeval", 2, 6),
        ("direct", 4, 8), ("chatclient", 4, 8), ("lmeval", 4, 8),
    ]  # fmt: skip
    for r in runs:
        assert r["model"] == "fake" and r["label"] == "fake" and r["elapsed_s"] > 0
        assert r["requests_per_s"] > 0 and r["prompt_sizing"] == "guess"  # the fake counts 1
        # the fake answers 1 completion token; lm-eval returns text: ignore_eos's count assumed
        expected = (16, "assumed (ignore_eos)") if r["client"] == "lmeval" else (1, "usage")
        assert (r["completion_tokens"] / r["requests"], r["tokens_source"]) == expected
    (noise,) = [r for r in records if r.get("kind") == "noise_floor"]
    assert (noise["requests"], noise["identical"], noise["differing"]) == (8, 8, 0)
    assert noise["compared"] == "text"  # the fake gives no token ids
    assert "| fake | unique | chatclient | 4 | 8 |" in proc.stdout
    assert "| fake | 4 | 8 | text | 8 | 0 | None / None |" in proc.stdout


def test_the_fake_server_got_the_same_request_from_every_client(fake_server):
    """Same body from all three clients: the comparison is like for like."""
    tp = _module("quantgate_benchmarks_throughput", SCRIPT)
    seen = {}
    extra = {"ignore_eos": True, "chat_template_kwargs": {"enable_thinking": False}}
    bodies = [tp.payload("fake", "hello there", 16, extra)]
    for client in ("direct", "chatclient"):
        _, answers = tp.run_client(client, fake_server.base_url, "fake", bodies, 1, 30)
        seen[client] = answers[0].text
    assert seen == {"direct": "echo: hello there", "chatclient": "echo: hello there"}
    body = bodies[0]
    assert body["max_tokens"] == 16 and body["temperature"] == 0.0 and body["seed"] == 1234
    assert body["ignore_eos"] is True and body["messages"][-1]["content"] == "hello there"


@pytest.mark.parametrize("client", ["direct", "chatclient", "lmeval"])
def test_every_client_keeps_256_requests_in_flight(tmp_path, client):
    """The suite's highest num_concurrent: no client caps it (a connection pool's or a thread
    pool's default size would); the server holds each request until 256 are in flight."""
    tp = _module("quantgate_benchmarks_throughput", SCRIPT)
    port = free_port()
    argv = [*_fake_argv(port, mode="gather"), "--gather", "256"]
    server = Server(argv, port=port, served_model="fake", log_path=tmp_path / "fake.log",
                    startup_timeout=30, ready_checks=[models_include()])  # fmt: skip
    bodies = [tp.payload("fake", f"prompt {i}", 8, {}) for i in range(256)]
    with server:
        _, answers = tp.run_client(client, server.base_url, "fake", bodies, 256, 60)
    assert len(answers) == 256
    assert max(int(a.text.removeprefix("in flight: ")) for a in answers) == 256


def test_the_driver_records_what_ran_skips_what_would_overrun_and_writes_its_files(
    tmp_path, monkeypatch
):
    bench = _module("h200_bench", REPO / "benchmarks" / "h200_bench.py")

    def fake_plan(spec, models, out):
        port = free_port()
        return ServerPlan(
            engine="vllm", engine_version=None, checkpoint="fake", model_path="fake",
            argv=_fake_argv(port, "m"), env={**os.environ, "QG_PROFILE_MARK": "1"}, port=port,
            log_path=out / f"{spec.label}.log",
            startup_timeout=30, shutdown_timeout=10, served_model="m",
            checks=[models_include("m")],
        )  # fmt: skip

    small = dict(prompt_tokens=60, max_tokens=8, estimate_s=1)
    plans = {
        "test": (
            bench.ServerSpec(
                "fake",
                (
                    bench.Bench("throughput", 2, 4, clients=bench.ALL, **small),
                    bench.Bench("noise", 2, 4, **small),
                    bench.Bench("throughput", 2, 4, **{**small, "estimate_s": 10_000}),
                ),
                start_estimate_s=1,
            ),
            bench.ServerSpec("too late", (bench.Bench("throughput", 2, 4, **small),),
                             start_estimate_s=10_000),
        )
    }  # fmt: skip
    monkeypatch.setattr(bench, "plan_for", fake_plan)
    monkeypatch.setattr(bench, "PLANS", plans)
    assert bench.main(["--plan", "test", "--out", str(tmp_path), "--models", str(tmp_path),
                       "--work", str(tmp_path / "work"), "--budget-s", "300"]) == 0  # fmt: skip
    records = json.loads((tmp_path / "test.json").read_text())
    kinds = [(r.get("kind", "throughput"), r["label"], r.get("client")) for r in records]
    assert kinds == [
        ("machine", "", None),
        ("server", "fake", None),
        ("throughput", "fake", "direct"),
        ("throughput", "fake", "chatclient"),
        ("throughput", "fake", "lmeval"),
        ("noise_floor", "fake", None),
        ("skipped", "fake", None),  # the bench estimated past the budget
        ("skipped", "too late", None),  # the server whose start would not fit
    ]
    assert records[1]["argv"].startswith("--port") and records[1]["startup_s"] >= 0
    # the environment the server ran with beyond the driver's own: a profile's variables (the
    # deterministic profile's VLLM_BATCH_INVARIANT) come from the suite, not from the spec
    assert records[1]["env"] == {"QG_PROFILE_MARK": "1"}
    assert records[5]["identical"] == 4
    table = (tmp_path / "test.md").read_text()
    assert "| fake | unique | lmeval | 2 | 4 |" in table and "| too late | skipped |" in table
    assert "=== fake" in (tmp_path / "test-servers.txt").read_text()


# --- benchmarks/gpu_hours.py: the GPU-hours model -------------------------------------------------


def _hours():
    return _module("quantgate_benchmarks_gpu_hours", REPO / "benchmarks" / "gpu_hours.py")


def test_the_gpu_hours_model_reproduces_the_h200_measurements_it_was_fitted_to():
    gh = _hours()
    rows = gh.calibration(gh.Engine())
    assert [r["measured_tok_s"] for r in rows] == [293.0, 650.0, 680.0, 109.0]
    assert all(0.95 <= r["ratio"] <= 1.05 for r in rows), rows


def test_the_gpu_hours_model_charges_what_the_server_must_compute():
    gh = _hours()
    engine, bf16 = gh.Engine(), gh.PRECISIONS["bf16"]
    base = gh.Workload("w", 64, 2000, 100, 100, 64, sigma=1e-9)
    plain = gh.simulate(base, engine, bf16)
    cached = gh.simulate(
        gh.replace(base, shared_prefix=1700, groups=2), engine, bf16
    )  # two subjects' exemplars: computed once each, then served from the prefix cache
    assert plain.output_tokens == cached.output_tokens == 64 * 100
    assert plain.prompt_tokens == 64 * 2000
    # the first step's 8192 tokens start 5 prompts in full (no prefix computed yet); the other
    # 59 compute only their own 300 tokens
    assert cached.prompt_tokens == 5 * 2000 + 59 * 300 and cached.seconds < plain.seconds
    one = gh.simulate(gh.replace(base, items=1), engine, bf16)
    chained = gh.simulate(gh.replace(base, items=1, chain=5), engine, bf16)  # SciCode's steps
    assert chained.output_tokens == 5 * 100 and chained.seconds >= 4.9 * one.seconds
    passes = gh.simulate(gh.replace(base, passes=3), engine, bf16)  # repeats: one after another
    assert passes.output_tokens == 3 * plain.output_tokens
    assert passes.seconds == pytest.approx(3 * plain.seconds, rel=0.05)
