"""The whole chain on the embedded tiny suite: real `transformers serve` processes, real lm-eval,
the committed BF16 baselines, the paired gate — and a planted broken precision it must fail.

Each run gets its own --quantgate-dir (servers' logs, lm-eval cache, the tiny model built once
per module) and a copy of baselines/, so the committed files are never touched.
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quantgate.suites import load_suite
from tests.support import hear_sigint

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-e2e")


def _pytest_args(workdir: Path, *args: str, qg: str = "qg") -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "accuracy",
        "--suite",
        "tiny",
        f"--quantgate-dir={workdir / qg}",
        f"--baselines-dir={workdir / 'baselines'}",
        "-p",
        "no:cacheprovider",
        *args,
    ]


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _pytest_args(workdir, *args), cwd=REPO, capture_output=True, text=True, timeout=1500
    )


def _outcomes(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    return {
        word: int(n)
        for n, word in re.findall(
            r"(\d+) (passed|failed|skipped|xfailed|"
            r"xpassed|errors?)",
            last,
        )
    }


def _report(workdir: Path) -> dict:
    return json.loads((workdir / "qg" / "reports" / "latest" / "report.json").read_text())


def test_gate_passes_fp8_nvfp4_and_fails_int4_and_the_broken_int2(workdir):
    shutil.copytree(REPO / "baselines", workdir / "baselines")
    before = {p: p.read_bytes() for p in (workdir / "baselines").rglob("*.json")}
    assert before, "the tiny suite's BF16 baselines are committed under baselines/tiny/"
    result = _run(workdir)
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    counts = _outcomes(out)
    suite = load_suite(REPO / "tests" / "accuracy" / "suites" / "tiny.yaml")
    tasks = list(suite.tasks)
    expected_fail = [p for p, spec in suite.precisions.items() if spec.expect == "fail"]
    assert expected_fail == ["int4", "int2"]
    # every task x (bf16, fp8, nvfp4), 5 throughput cases and the suite verdicts of fp8 and nvfp4
    # pass; int4's and int2's gates (per task and across the suite) fail as they must (strict
    # xfails); fp8_online (vLLM's own --quantization fp8) needs a GPU: its cases skip
    n = len(tasks)
    expected = {"passed": 3 * n + 5 + 2, "skipped": n + 2, "xfailed": 2 * (n + 1)}
    assert counts == expected, out[-3000:]
    assert "quantgate gate summary" in out
    gate = out.split("quantgate gate summary")[1].split("quantgate suite verdicts")[0]
    rows = {
        line.split()[0]: line
        for line in gate.splitlines()
        if line.startswith("tiny-") and len(line.split()) > 5 and "-all-" not in line.split()[0]
    }
    built = ("bf16", "fp8", "nvfp4", "int4", "int2")
    assert set(rows) == {f"tiny-{t}-{p}" for t in tasks for p in built}
    assert "quantgate LiveBench summary" in out  # official and per-question, relative to bf16
    for task in tasks:
        assert rows[f"tiny-{task}-bf16"].split()[1:3] == ["own", "history"]
        assert rows[f"tiny-{task}-int2"].rstrip().endswith("fail")
        # the suite's sequential looks: the planted int2 is settled at the first, visibly
        assert f"(look 1/{suite.sequential.looks})" in rows[f"tiny-{task}-int2"]
    # what ran matched the stored baselines: nothing rewritten without --snapshot-update
    assert {p: p.read_bytes() for p in (workdir / "baselines").rglob("*.json")} == before
    assert (workdir / "qg" / "runs" / "tiny" / "fp8" / "arith" / "samples.jsonl").exists()
    # the report folder the next tests read (they skip only when this test did not run)
    assert (workdir / "qg" / "reports" / "latest" / "report.json").exists()


def test_the_gate_summary_looks_like_a_real_comparison(workdir):
    """Properties of the run above (its report.json), never its numbers: BF16 is right on some
    items and wrong on others, some quantized copy flips items both ways, every verdict is
    settled, fp8 passes, int2 fails, int4 gets the verdict its drop deserves."""
    if not (workdir / "qg" / "reports" / "latest").exists():
        pytest.skip("needs the first end-to-end run")
    results = {(r["task"], r["precision"]): r for r in _report(workdir)["tasks"]}
    tasks = {task for task, _ in results}
    for task in tasks:
        assert 0.4 <= results[task, "bf16"]["score"] <= 0.9, task
    candidates = [r for r in results.values() if r["vs"] == "bf16"]
    assert all(r["verdict"] in ("pass", "fail") for r in candidates)  # none inconclusive
    assert any(r["flips_down"] > 0 and r["flips_up"] > 0 for r in candidates)
    for task in tasks:
        assert results[task, "fp8"]["verdict"] == "pass"
        assert results[task, "int2"]["verdict"] == "fail"
        nvfp4, int4, int2 = (results[task, p] for p in ("nvfp4", "int4", "int2"))
        assert nvfp4["diff"] > int4["diff"] > int2["diff"]  # the middle ground lies between
        # int4's verdict follows its real drop: a FAIL is a drop beyond the margin, shown
        # significant; a PASS keeps the whole interval above -margin
        if int4["verdict"] == "fail":
            assert int4["diff"] < -int4["margin"] and int4["ci_high"] < 0
        else:
            assert int4["ci_low"] >= -int4["margin"]


def test_the_planted_int2_stops_at_the_first_look_and_the_report_follows_its_schema(workdir):
    """Properties of the run above: report.json is a valid quantgate.reporting.schema.Report;
    with the suite's sequential looks, int2 is gated on the first chunk only (a third of the
    items, as few as the reference's first look holds) and its run says it stopped there; every
    candidate ran no more items than the reference."""
    from quantgate.reporting.schema import Report
    from quantgate.sequential import look_sizes

    if not (workdir / "qg" / "reports" / "latest").exists():
        pytest.skip("needs the first end-to-end run")
    report = Report.model_validate(_report(workdir))
    suite = load_suite(REPO / "tests" / "accuracy" / "suites" / "tiny.yaml")
    looks = suite.sequential.looks
    assert looks > 1
    results = {(r.task, r.precision): r for r in report.tasks}
    for task in suite.tasks:
        total = results[task, "bf16"].n
        first = look_sizes(total, looks)[0]
        assert results[task, "int2"].n == first < total
        assert (results[task, "int2"].look, results[task, "int2"].total) == (1, total)
        assert results[task, "int2"].verdict == "fail"
        assert all(results[task, p].n <= total for p in ("fp8", "nvfp4", "int4"))
        run = json.loads(
            (workdir / "qg" / "runs" / "tiny" / "int2" / task / "run.json").read_text()
        )
        stopped = run["provenance"]["sequential"]
        assert (stopped["look"], stopped["stopped_early"], stopped["outcomes"]) == (
            1,
            True,
            ["fail"],
        )


def test_a_rerun_rescores_from_the_cache_without_a_server(workdir):
    logs = workdir / "qg" / "runs" / "tiny" / "fp8"
    before = set(logs.glob("server-*.log"))
    if not before:
        pytest.skip("needs the first end-to-end run")
    result = _run(workdir, "--precision", "fp8", "-k", "arith")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _outcomes(result.stdout) == {"passed": 1}
    assert set(logs.glob("server-*.log")) == before  # every answer cached: no server started


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_session_leaves_no_server_behind(workdir, sig):
    # a quantgate dir with the built tiny model but no generation cache: the server must start
    fresh = f"interrupted-{sig.name}"
    if (workdir / "qg" / "cache" / "tiny").exists():
        shutil.copytree(workdir / "qg" / "cache" / "tiny", workdir / fresh / "cache" / "tiny")
    proc = subprocess.Popen(
        _pytest_args(workdir, "--precision", "bf16", qg=fresh),
        cwd=REPO,
        preexec_fn=hear_sigint,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        servers = _wait_for_server(psutil.Process(proc.pid), timeout=600)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        gone, alive = psutil.wait_procs(servers, timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    finally:
        if proc.poll() is None:
            proc.kill()


def _wait_for_server(pytest_proc: psutil.Process, timeout: float) -> list[psutil.Process]:
    """The server process tree once it answers (its log shows a served request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = [
            c for c in pytest_proc.children(recursive=True) if "serve" in " ".join(c.cmdline())
        ]
        if servers and any(s.net_connections(kind="tcp") for s in servers):
            return servers + [d for s in servers for d in s.children(recursive=True)]
        time.sleep(0.5)
    raise AssertionError("the tiny suite's server never started")
