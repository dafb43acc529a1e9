"""The throughput cases (plugins/throughput.py), driven through pytester on a demo suite.

The demo's servers are the fake OpenAI server (tests/fixtures/fake_server.py): its conftest
swaps ``quantgate.serving.engines.plan_server`` for one that starts the fake server, so the real
``GateSession.endpoint`` starts, reuses and stops them. ``evaluate`` asks for the precision's
endpoint (starting the server, as the real runner does) and returns canned scores.
"""

import json
import sys
from pathlib import Path

import pytest

# preloaded with those of tests/plugin/conftest.py: the demo projects import it
import quantgate.serving.throughput  # noqa: F401
from quantgate.serving.servers import Server, free_port
from tests.support import DEMO_SUITE, GATE_TEST, THROUGHPUT_TEST

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake_server.py"

SUITE = DEMO_SUITE + "throughput: {requests: 8, max_tokens: 4, concurrency: 2}\n"

CONFTEST = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, os.environ["DEMO_REPO"])  # pytest-xdist workers: the repository's plugins
import pytest
import quantgate.serving.engines as engines
from quantgate.runs import TaskRun
from quantgate.serving.servers import Server, free_port

pytest_plugins = ["plugins.options", "plugins.cases", "plugins.fixtures", "plugins.decision",
                  "plugins.throughput", "plugins.summary"]
LOGS = Path(os.environ["DEMO_LOGS"])

def fake_plan(suite, precision, **_):  # out_dir, cache_dir, ...: unused
    port = free_port()
    argv = [sys.executable, os.environ["DEMO_FAKE"], "healthy", "--port", str(port),
            "--served-model-name", os.environ.get("DEMO_SERVED", "fake")]
    return engines.ServerPlan(engine="demo", engine_version="0", checkpoint=precision,
                              model_path="fake", argv=argv, env=dict(os.environ), port=port,
                              log_path=LOGS / f"{precision}-{port}.log", startup_timeout=20,
                              shutdown_timeout=5, served_model="fake")

@pytest.fixture(scope="session", autouse=True)
def fake_servers():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engines, "plan_server", fake_plan)
        yield

@pytest.fixture
def evaluate(quantgate_session):
    scores = json.loads(Path(os.environ["DEMO_SCORES"]).read_text())
    def run(case):
        quantgate_session.endpoint(case)  # the precision's server, as the real runner does
        return TaskRun(task=case.task, precision=case.precision,
                       scores=scores[case.precision][case.task],
                       provenance={"engine": "demo", "engine_version": "0"})
    return run
"""

TESTS = {
    "test_demo_gate": GATE_TEST,
    # collected first (file order): the plugin must still run it after its group's task cases
    "test_demo_a_throughput": THROUGHPUT_TEST,
}

SCORES = {
    p: {t: {str(i): float(i < 90) for i in range(100)} for t in ("alpha", "beta")}
    for p in ("bf16", "fp8", "nvfp4")
}


@pytest.fixture
def demo(gate_project, pytester, monkeypatch):
    suites = gate_project(CONFTEST, **TESTS)
    (suites / "demo.yaml").write_text(SUITE)
    logs = pytester.mkdir("logs")
    (pytester.path / "scores.json").write_text(json.dumps(SCORES))
    monkeypatch.setenv("DEMO_SCORES", str(pytester.path / "scores.json"))
    monkeypatch.setenv("DEMO_LOGS", str(logs))
    monkeypatch.setenv("DEMO_FAKE", str(FAKE))
    monkeypatch.setenv("DEMO_REPO", str(REPO))

    class Demo:
        baselines = pytester.path / "baselines"

        @staticmethod
        def run(*args):
            return pytester.runpytest(
                "-m",
                "accuracy",
                f"--suites-dir={suites}",
                f"--baselines-dir={Demo.baselines}",
                f"--quantgate-dir={pytester.path / 'qg'}",
                *args,
            )

        @staticmethod
        def served() -> dict[str, list[int]]:
            """Per precision: chat completions served by each of its servers, in start order."""
            out: dict[str, list[int]] = {}
            for log in sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime_ns):
                out.setdefault(log.name.split("-")[0], []).append(
                    log.read_text().count('"POST /v1/chat/completions')
                )
            return out

        @staticmethod
        def clear_logs():
            for log in logs.glob("*.log"):
                log.unlink()

    Demo.suites = suites
    return Demo


def _ids(result) -> list[str]:
    return [line.split("[")[1].rstrip("]") for line in result.outlines if "::" in line]


def test_a_throughput_case_per_precision_last_in_its_group(demo):
    ids = _ids(demo.run("--collect-only", "-q"))
    assert ids == [
        "demo-alpha-bf16",
        "demo-beta-bf16",
        "demo-throughput-bf16",
        "demo-alpha-fp8",
        "demo-beta-fp8",
        "demo-throughput-fp8",
        "demo-alpha-nvfp4",
        "demo-beta-nvfp4",
        "demo-throughput-nvfp4",
    ]
    assert _ids(demo.run("--collect-only", "-q", "-m", "accuracy and benchmark")) == [
        "demo-throughput-bf16",
        "demo-throughput-fp8",
        "demo-throughput-nvfp4",
    ]
    assert _ids(demo.run("--collect-only", "-q", "--precision", "fp8")) == [
        "demo-alpha-fp8",
        "demo-beta-fp8",
        "demo-throughput-fp8",
    ]


def test_no_throughput_section_no_throughput_cases(demo):
    suite = demo.suites / "demo.yaml"
    suite.write_text(
        suite.read_text().replace("throughput: {requests: 8, max_tokens: 4, concurrency: 2}\n", "")
    )
    result = demo.run("-m", "accuracy and benchmark", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*got empty parameter set*throughput_case*"])


def test_a_precisions_requirement_skips_its_throughput_case(demo, monkeypatch):
    suite = demo.suites / "demo.yaml"
    suite.write_text(
        suite.read_text().replace(
            "org/demo-nvfp4}", 'org/demo-nvfp4, requires: ["env:QG_TEST_NVFP4"]}'
        )
    )
    monkeypatch.delenv("QG_TEST_NVFP4", raising=False)
    result = demo.run("-m", "accuracy and benchmark", "--precision", "nvfp4", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*nvfp4 requires env:QG_TEST_NVFP4*"])


@pytest.mark.slow
def test_throughput_runs_on_its_precisions_server_and_the_summary_is_relative(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update", "-k", "not throughput").ret == 0
    demo.clear_logs()
    result = demo.run()
    result.assert_outcomes(passed=9)
    # one server per precision, started by its first task case and reused by the throughput
    # case: its 8 requests are all that server served (the demo's task scores are canned)
    assert demo.served() == {"bf16": [8], "fp8": [8], "nvfp4": [8]}
    result.stdout.fnmatch_lines(
        [
            "*quantgate gate summary*",
            "*quantgate throughput*",
            "suite demo, relative to bf16 = 100 %",
            "precision*requests*conc*tokens*tok/req*time*tok/s*req/s*latency*"
            "tok/s vs bf16*req/s vs bf16",
            "bf16 * 8 * 2 * 8 * 1.0 * s * 100.0 % * 100.0 %",
            "fp8 * 8 * 2 * 8 * 1.0 * s * %*%",
            "nvfp4 * 8 * 2 * 8 * 1.0 * s * %*%",
            "*benchmark 'throughput demo': 3 tests*",
        ]
    )


@pytest.mark.slow
def test_benchmark_save_and_compare(demo, pytester):
    select = ("-m", "accuracy and benchmark")
    assert demo.run(*select, "--benchmark-save=first").ret == 0
    saved = list((pytester.path / ".benchmarks").rglob("0001_first.json"))
    assert len(saved) == 1
    benchmarks = json.loads(saved[0].read_text())["benchmarks"]
    assert [b["name"] for b in benchmarks] == [
        f"test_throughput[demo-throughput-{p}]" for p in ("bf16", "fp8", "nvfp4")
    ]
    info = benchmarks[1]["extra_info"]
    assert info["precision"] == "fp8" and info["requests"] == 8 and info["concurrency"] == 2
    assert info["completion_tokens"] == 8 and info["tokens_per_s"] > 0
    assert info["requests_per_s"] > 0 and benchmarks[1]["group"] == "throughput demo"
    result = demo.run(*select, "--benchmark-compare", "--benchmark-compare-fail=mean:1000%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*quantgate throughput*", "*benchmark 'throughput demo': 6 tests*"]
    )
    out = result.stdout.str()  # the benchmark table's rows are sorted by time: any order
    for precision in ("bf16", "fp8", "nvfp4"):
        for run in ("0001_first", "NOW"):
            assert f"test_throughput[demo-throughput-{precision}] ({run})" in out


def test_without_the_reference_there_is_no_relative_speed(demo):
    result = demo.run("-m", "accuracy and benchmark", "--precision", "fp8")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "suite demo, relative to bf16 = 100 % (bf16 did not run: no relative speed)",
            "fp8 * 8 * 2 * 8 * - * -",
        ]
    )


def test_a_failing_server_fails_the_case_with_its_answer(demo, monkeypatch):
    monkeypatch.setenv("DEMO_SERVED", "another-model")  # the server answers 400 to "fake"
    result = demo.run("-m", "accuracy and benchmark", "--precision", "fp8")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ThroughputError: throughput request */8 to "
            "http://127.0.0.1:*/v1/chat/completions returned HTTP 400*"
            "unknown model*"
        ]
    )


def test_server_url_measures_the_running_server(demo, tmp_path):
    port = free_port()
    argv = [sys.executable, str(FAKE), "healthy", "--port", str(port), "--served-model-name", "ext"]
    with Server(
        argv, port=port, served_model="ext", log_path=tmp_path / "ext.log", startup_timeout=20
    ) as server:
        result = demo.run(
            "-m",
            "accuracy and benchmark",
            "--precision",
            "nvfp4",
            f"--server-url={server.base_url}",
        )
        result.assert_outcomes(passed=1)
        assert (tmp_path / "ext.log").read_text().count('"POST /v1/chat/completions') == 8
    assert demo.served() == {}  # nothing started: the running server was measured


@pytest.mark.slow
def test_xdist_workers_rows_reach_the_summary(demo):
    result = demo.run("-m", "accuracy and benchmark", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*quantgate throughput*",
            "suite demo, relative to bf16 = 100 %",
            "bf16 * 100.0 % * 100.0 %",
            "fp8 *",
            "nvfp4 *",
        ]
    )
