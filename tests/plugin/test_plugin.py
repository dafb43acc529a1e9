"""The pytest plugin, driven through pytester on a demo suite.

The demo's ``evaluate`` fixture is overridden (a pytest feature) to return canned per-item
scores, so these tests exercise options, parametrization, baselines and verdicts without a
server; the real chain runs in tests/e2e.
"""

import json
import os
from pathlib import Path

import pytest

from tests.support import DEMO_SUITE, GATE_PLUGINS

REPO = Path(__file__).resolve().parents[2]

CONFTEST = (
    GATE_PLUGINS
    + """
import json, os
from pathlib import Path
import pytest
from quantgate.runs import TaskRun

@pytest.fixture
def evaluate():
    scores = json.loads(Path(os.environ["DEMO_SCORES"]).read_text())
    def run(case):
        return TaskRun(task=case.task, precision=case.precision,
                       scores=scores[case.precision][case.task],
                       provenance={"engine": "demo", "engine_version": "0"})
    return run
"""
)


def _items(n_right: int, n: int = 100) -> dict[str, float]:
    return {str(i): 1.0 if i < n_right else 0.0 for i in range(n)}


@pytest.fixture
def demo(gate_project, pytester, monkeypatch):
    suites = gate_project(CONFTEST)
    (suites / "demo.yaml").write_text(DEMO_SUITE)
    scores_file = pytester.path / "scores.json"
    monkeypatch.setenv("DEMO_SCORES", str(scores_file))

    def set_scores(**per_precision):
        scores_file.write_text(
            json.dumps({p: {"alpha": s, "beta": s} for p, s in per_precision.items()})
        )

    set_scores(bf16=_items(90), fp8=_items(90), nvfp4=_items(90))
    demo.set_scores = set_scores
    demo.suites = suites
    demo.baselines = pytester.path / "baselines"

    def run(*args, subprocess=False):
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(
            "-m", "accuracy", f"--suites-dir={suites}", f"--baselines-dir={demo.baselines}", *args
        )

    demo.run = run
    return demo


def test_options_are_in_help(pytester):
    pytester.syspathinsert(REPO)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*quantgate accuracy gate*",
            "*--suite=NAME*",
            "*--precision=NAME*",
            "*--server-url=URL*",
            "*--limit=N*",
        ]
    )


def test_cases_are_parametrized_and_grouped_by_precision(demo, pytester):
    result = demo.run("--collect-only", "-q")
    ids = [line.split("[")[1].rstrip("]") for line in result.outlines if "::" in line]
    assert ids == [
        "demo-alpha-bf16",
        "demo-beta-bf16",
        "demo-alpha-fp8",
        "demo-beta-fp8",
        "demo-alpha-nvfp4",
        "demo-beta-nvfp4",
    ]
    only = demo.run("--collect-only", "-q", "--precision", "nvfp4")
    assert sum("::" in line for line in only.outlines) == 2


def test_plain_pytest_deselects_accuracy_cases(demo, pytester):
    result = pytester.runpytest(f"--suites-dir={demo.suites}")
    result.assert_outcomes(deselected=6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "nope"], "*--suite nope: no such suite in*available: demo*"),
        (
            ["--precision", "int4"],
            "*--precision int4: not a precision of the selected suites; "
            "available: bf16, fp8, nvfp4*",
        ),
        (
            ["--limit", "5", "--snapshot-update"],
            "*--limit with --snapshot-update would store a partial baseline*",
        ),
        (["--server-url", "http://x:1/v1"], "*--server-url gates one deployment*"),
    ],
)
def test_usage_errors(demo, args, message):
    result = demo.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_suite_file_names_file_key_found_and_expected(demo):
    broken = DEMO_SUITE.replace("margin: 0.05}", "margin: five}", 1)
    (demo.suites / "broken.yaml").write_text(
        broken.replace("checkpoint: org/demo-fp8", "chekpoint: x")
    )
    result = demo.run("--collect-only")
    output = result.stdout.str() + result.stderr.str()
    assert "broken.yaml: 3 problems" in output
    assert "precisions.fp8.checkpoint: found nothing; expected this key to be set" in output
    assert "precisions.fp8.chekpoint: unknown key" in output
    assert "tasks.alpha.gate.margin: found 'five' (str); expected a number" in output


def test_a_binary_suite_file_is_named_in_a_usage_error(demo):
    """Probe #6: 2 kB of random bytes as a suite file gave INTERNALERROR and never named it."""
    (demo.suites / "noise.yaml").write_bytes(bytes(range(256)) * 8)
    result = demo.run("--collect-only")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{demo.suites / 'noise.yaml'}: not UTF-8 text (byte 128 is 0x80)" in output
    assert "INTERNALERROR" not in output and "Traceback" not in output


@pytest.mark.parametrize("args", [(), ("--suite", "demo")], ids=["all suites", "--suite"])
def test_a_broken_suite_is_one_usage_error_without_a_traceback(demo, args):
    """Probe #7: without --suite, a YAML syntax error came after a 30-line pluggy trace, twice."""
    (demo.suites / "tabs.yaml").write_text("model: m\nprecisions:\n\tbf16: {checkpoint: x}\n")
    result = demo.run("--collect-only", *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert output.count("tabs.yaml: while scanning") == 1, output
    assert "pluggy" not in output and "Traceback" not in output


def test_a_broken_suite_does_not_stop_plain_pytest(demo, pytester):
    (demo.suites / "tabs.yaml").write_text("model: m\nprecisions:\n\tbf16: {checkpoint: x}\n")
    pytester.makepyfile(test_unrelated="def test_unrelated():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(f"--suites-dir={demo.suites}")  # the ini deselects accuracy
    result.assert_outcomes(passed=1, deselected=1, warnings=1)
    result.stdout.fnmatch_lines(["*accuracy cases not collected: *tabs.yaml: while scanning*"])


def test_missing_reference_baseline_prints_the_command_that_creates_it(demo):
    result = demo.run("--precision", "fp8", "-k", "alpha")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no baseline at *demo/alpha/bf16.json; create it with:*",
            "*pytest -m accuracy --suite demo --precision bf16 --snapshot-update*",
        ]
    )


def test_a_binary_baseline_fails_naming_it_and_snapshot_update_rewrites_it(demo):
    assert demo.run("--precision", "bf16", "-k", "alpha", "--snapshot-update").ret == 0
    path = demo.baselines / "demo" / "alpha" / "bf16.json"
    path.write_bytes(b"\xff\xfe\x00 not a baseline")
    broken = demo.run("--precision", "bf16", "-k", "alpha")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["*alpha/bf16.json: not a quantgate baseline (not UTF-8*"])
    assert "UnicodeDecodeError" not in broken.stdout.str()
    fixed = demo.run("--precision", "bf16", "-k", "alpha", "--snapshot-update")
    fixed.assert_outcomes(passed=1)
    assert json.loads(path.read_text())["summary"]["mean"] == pytest.approx(0.9)


def test_snapshot_update_writes_only_what_ran(demo):
    # other baselines already there: another task of the reference, another precision, and
    # another suite's file; none of them must be rewritten or deleted
    assert demo.run("--snapshot-update").ret == 0
    others = [
        demo.baselines / "demo" / "beta" / "bf16.json",
        demo.baselines / "demo" / "alpha" / "fp8.json",
        demo.baselines / "other" / "gamma" / "bf16.json",
    ]
    others[2].parent.mkdir(parents=True)
    others[2].write_text('{"items": {}}')
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in others}
    demo.set_scores(bf16=_items(80), fp8=_items(90), nvfp4=_items(90))  # bf16 really changed
    alpha = demo.baselines / "demo" / "alpha" / "bf16.json"
    kept = alpha.read_bytes()
    refused = demo.run("--precision", "bf16", "-k", "alpha", "--snapshot-update")
    assert refused.ret == 1 and alpha.read_bytes() == kept  # a 10 pp drop is not stored as is
    refused.stdout.fnmatch_lines(["*not replacing*alpha/bf16.json*", "*--accept-drift"])
    for selection in (
        ["--precision", "bf16", "-k", "alpha"],
        ["--precision", "bf16"],
        ["--suite", "demo", "--precision", "bf16", "--precision", "nvfp4"],
    ):
        result = demo.run(*selection, "--snapshot-update", "--accept-drift")
        assert result.ret == 0
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in others[1:]} == {
            p: v for p, v in before.items() if p != others[0]
        }
        assert others[1].exists() and others[2].exists()
    assert others[0].read_bytes() != before[others[0]][0]  # beta/bf16 ran in the last two
    stored = json.loads((demo.baselines / "demo" / "alpha" / "bf16.json").read_text())
    assert stored["summary"]["mean"] == pytest.approx(0.8)
    assert stored["provenance"]["checkpoint"] == "org/demo"
    assert not list(demo.baselines.rglob("*.tmp"))


def test_gate_pass_fail_and_summary_table(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(89), nvfp4=_items(70))
    result = demo.run()
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*fail: paired, n=100, reference 90.0% -> candidate 70.0% (diff -20.0 pp*",
            "*quantgate gate summary*",
            "*demo-alpha-fp8*bf16*100*90.0%*89.0%*-1.0 pp*pass*",
            "*demo-alpha-nvfp4*bf16*100*90.0%*70.0%*-20.0 pp*20/0*fail*",
        ]
    )


def test_a_session_writes_its_report_folder_and_junit_properties(demo, pytester):
    import xml.etree.ElementTree as ET

    from quantgate.reporting import load_report

    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(89), nvfp4=_items(70))
    folder = pytester.path / "nightly"
    result = demo.run(f"--report-dir={folder}", "--junitxml=junit.xml")
    result.stdout.fnmatch_lines([f"quantgate report: {folder / 'report.md'}"])
    report = load_report(folder)
    verdicts = {(t.task, t.precision): t.verdict for t in report.tasks}
    assert verdicts == {
        ("alpha", "bf16"): "pass",  # own history
        ("beta", "bf16"): "pass",
        ("alpha", "fp8"): "pass",
        ("beta", "fp8"): "pass",
        ("alpha", "nvfp4"): "fail",
        ("beta", "nvfp4"): "fail",
    }
    assert "| nvfp4 | 70.0 % | 77.8 % | -20.0 pp |" in (folder / "report.md").read_text()
    assert {p.name for p in folder.iterdir()} >= {"relative.svg", "flips.svg"}
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in ET.parse(pytester.path / "junit.xml").iter("testcase")
    }
    nvfp4 = cases["test_benchmark[demo-alpha-nvfp4]"]
    assert nvfp4["quantgate.outcome"] == "failed" and nvfp4["quantgate.bf16.verdict"] == "fail"
    assert float(nvfp4["quantgate.bf16.diff"]) == pytest.approx(-0.2)
    assert (nvfp4["quantgate.bf16.flips_down"], nvfp4["quantgate.bf16.flips_up"]) == ("20", "0")
    assert float(nvfp4["quantgate.bf16.ci_high"]) < 0 < 100 == int(nvfp4["quantgate.bf16.n"])
    assert cases["test_benchmark[demo-alpha-fp8]"]["quantgate.outcome"] == "ok"
    # a run that ran no accuracy case writes no report
    assert "quantgate report" not in demo.run("--collect-only").stdout.str()


def test_inconclusive_fails_and_says_how_many_items_would_settle_it(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(87), nvfp4=_items(90))
    result = demo.run("--precision", "fp8", "-k", "alpha")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*inconclusive*about * items would settle it*"])


def test_stale_reference_baseline_is_reported_never_used(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    suite = demo.suites / "demo.yaml"
    suite.write_text(suite.read_text().replace("checkpoint: org/demo}", "checkpoint: org/demo-v2}"))
    result = demo.run("--precision", "fp8", "-k", "alpha")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '*is stale (checkpoint: baseline "org/demo", suite "org/demo-v2")*',
            "*pytest -m accuracy --suite demo --precision bf16 --snapshot-update*",
        ]
    )


def test_reference_drift_against_its_own_history_fails(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(70), fp8=_items(90), nvfp4=_items(90))
    result = demo.run("--precision", "bf16", "-k", "alpha")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*demo-alpha-bf16 drifted from its own baseline*"])


def test_a_planted_broken_precision_must_fail(demo):
    suite = demo.suites / "demo.yaml"
    suite.write_text(suite.read_text().replace("org/demo-nvfp4}", "org/demo-nvfp4, expect: fail}"))
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(90), nvfp4=_items(50))
    demo.run("--precision", "nvfp4").assert_outcomes(xfailed=2)
    demo.set_scores(bf16=_items(90), fp8=_items(90), nvfp4=_items(90))  # not broken after all
    demo.run("--precision", "nvfp4").assert_outcomes(failed=2)  # strict: XPASS is a failure


def test_limit_pairs_a_smoke_run_with_the_same_reference_items(demo):
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(20, n=20), nvfp4=_items(90))
    result = demo.run("--precision", "fp8", "-k", "alpha", "--limit", "20")
    # paired on the reference's first 20 items; 20 items cannot settle a 5 pp margin, which a
    # smoke run reports without failing
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*demo-alpha-fp8*bf16*20*100.0%*100.0%*+0.0 pp*inconclusive*"])


def test_requires_and_skip_give_reasons(demo, monkeypatch):
    suite = demo.suites / "demo.yaml"
    suite.write_text(
        suite.read_text() + '  gated:\n    lmeval_task: hle\n    metric: "acc,none"\n'
        '    requires: ["env:QG_TEST_TOKEN"]\n'
        + '  later:\n    lmeval_task: lcb\n    metric: "pass,none"\n'
        '    skip: "runner arrives with the code-benchmark issue"\n'
    )
    monkeypatch.delenv("QG_TEST_TOKEN", raising=False)
    result = demo.run("--precision", "bf16", "-k", "gated or later", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*gated requires env:QG_TEST_TOKEN*", "*runner arrives with the code-benchmark issue*"]
    )
    assert os.environ.get("QG_TEST_TOKEN") is None


@pytest.mark.slow
def test_xdist_keeps_each_precision_on_one_worker(demo, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the workers import plugins/ from the repo
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    result = demo.run("-n", "2", "-v", subprocess=True)
    result.assert_outcomes(passed=6)
    worker_of: dict[str, set[str]] = {}
    for line in result.outlines:
        if line.startswith("[gw") and "PASSED" in line:
            case_id = line.rsplit("[", 1)[1].split("]")[0]
            worker_of.setdefault(case_id.rsplit("-", 1)[1], set()).add(line[1:4])
    assert set(worker_of) == {"bf16", "fp8", "nvfp4"}
    assert all(len(workers) == 1 for workers in worker_of.values()), worker_of


def test_the_xdist_scheduler_groups_by_suite_and_precision(demo, pytester):
    from plugins.cases import xdist_scope

    scope = xdist_scope(pytester.parseconfig(f"--suites-dir={demo.suites}"))
    assert scope("test_demo_gate.py::test_benchmark[demo-alpha-fp8]") == "demo-fp8"
    assert scope("test_demo_gate.py::test_benchmark[demo-beta-fp8]") == "demo-fp8"
    assert scope("test_t.py::test_throughput[demo-throughput-nvfp4]") == "demo-nvfp4"
    assert (
        scope("tests/scoring/test_x.py::test_y[args0]") == "tests/scoring/test_x.py::test_y[args0]"
    )


SUITE_TEST = """
import pytest
pytestmark = pytest.mark.accuracy

def test_benchmark(accuracy_case, evaluate, baseline):
    baseline.check(accuracy_case, evaluate(accuracy_case))

def test_suite_verdict(suite_case, suite_verdict):
    suite_verdict.check(suite_case)
"""


def test_one_suite_verdict_per_precision_after_its_tasks(demo, pytester):
    """Issue 12, item 6: <suite>-all-<precision> runs after the precision's task cases, asserts
    Holm's verdict across them (exit status and JUnit carry it), skips below two tasks."""
    import xml.etree.ElementTree as ET

    pytester.makepyfile(test_demo_gate=SUITE_TEST)
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    demo.set_scores(bf16=_items(90), fp8=_items(89), nvfp4=_items(70))
    result = demo.run("-v", "--junitxml=junit.xml")
    result.assert_outcomes(passed=5, failed=3)
    order = [line.split("::")[1].split(" ")[0] for line in result.outlines if "::test_" in line]
    fp8 = [t for t in order if t.endswith("-fp8]")]
    assert fp8[-1] == "test_suite_verdict[demo-all-fp8]"  # after fp8's tasks
    result.stdout.fnmatch_lines(
        [
            "*quantgate suite verdicts*",
            "*demo-all-fp8*2*0.05*pass*",
            "*demo-all-nvfp4*2*0.05*fail*alpha, beta*",
        ]
    )
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in ET.parse(pytester.path / "junit.xml").iter("testcase")
    }
    assert cases["test_suite_verdict[demo-all-nvfp4]"]["quantgate.suite_verdict"] == "fail"
    # every case of a candidate precision carries its suite verdict, known after its tasks
    assert cases["test_benchmark[demo-alpha-nvfp4]"]["quantgate.suite_verdict"] == "fail"
    assert cases["test_benchmark[demo-beta-fp8]"]["quantgate.suite_verdict"] == "pass"
    assert "quantgate.suite_verdict" not in cases["test_benchmark[demo-alpha-bf16]"]
    # the summary rows are JSON, never a Python repr
    row = json.loads(cases["test_benchmark[demo-alpha-nvfp4]"]["quantgate_verdict"])
    assert (row["case"], row["verdict"]) == ("demo-alpha-nvfp4", "fail")
    suite_row = json.loads(cases["test_suite_verdict[demo-all-nvfp4]"]["quantgate_suite"])
    assert suite_row["failed"] == ["alpha", "beta"]
    # one task only: the suite case skips, saying why
    one = demo.run("-k", "alpha or all", "-rs")
    one.assert_outcomes(passed=2, failed=1, skipped=2)
    one.stdout.fnmatch_lines(["*a suite verdict needs two or more tasks*(gated: alpha)*"])


LOGGING_EVALUATE = """

@pytest.fixture
def evaluate(quantgate_session):
    # as a managed server would: a log per precision, named by this process's session
    scores = json.loads(Path(os.environ["DEMO_SCORES"]).read_text())
    def run(case):
        folder = quantgate_session.root / "runs" / case.suite / case.precision
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"server-{quantgate_session.servers.session}.log").touch()
        return TaskRun(task=case.task, precision=case.precision,
                       scores=scores[case.precision][case.task],
                       provenance={"engine": "demo", "engine_version": "0"})
    return run
"""


@pytest.mark.slow
def test_xdist_controller_writes_the_report_folder_and_junit(demo, pytester, monkeypatch):
    """Under -n 2 the report comes from the rows the workers' reports carried, with the server
    logs the workers' sessions wrote (and not an earlier session's), and JUnit gets the suite
    verdicts."""
    import xml.etree.ElementTree as ET

    from quantgate.reporting import load_report

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest(CONFTEST + LOGGING_EVALUATE)
    pytester.makepyfile(test_demo_gate=SUITE_TEST)
    assert demo.run("--precision", "bf16", "--snapshot-update").ret == 0
    earlier = set(pytester.path.rglob("server-*.log"))
    assert len(earlier) == 1
    demo.set_scores(bf16=_items(90), fp8=_items(89), nvfp4=_items(70))
    folder = pytester.path / "nightly"
    result = demo.run("-n", "2", f"--report-dir={folder}", "--junitxml=junit.xml", subprocess=True)
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines([f"quantgate report: {folder / 'report.md'}"])
    report = load_report(folder)
    assert {(t.task, t.precision): t.verdict for t in report.tasks} == {
        ("alpha", "bf16"): "pass",
        ("beta", "bf16"): "pass",
        ("alpha", "fp8"): "pass",
        ("beta", "fp8"): "pass",
        ("alpha", "nvfp4"): "fail",
        ("beta", "nvfp4"): "fail",
    }
    assert [(v["precision"], v["outcome"]) for v in report.suite_verdicts] == [
        ("fp8", "pass"),
        ("nvfp4", "fail"),
    ]
    logs = set(pytester.path.rglob("server-*.log")) - earlier
    assert len(logs) == 3  # one per precision, by the workers' sessions
    assert report.artifacts.server_logs == sorted(str(p.resolve()) for p in logs)
    assert {p.name for p in folder.iterdir()} >= {"report.md", "relative.svg", "flips.svg"}
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in ET.parse(pytester.path / "junit.xml").iter("testcase")
    }
    assert cases["test_benchmark[demo-beta-nvfp4]"]["quantgate.suite_verdict"] == "fail"
    assert cases["test_benchmark[demo-alpha-fp8]"]["quantgate.suite_verdict"] == "pass"
