"""A cached re-run starts no server (issue 13, item 6): lm-eval tasks return their finished run
from the cache, LiveBench reads its stored answers, the code client answers from its cache; so
the second session creates no server at all. ``--from-cache`` makes that a requirement: a case
whose answers are missing fails saying how many and why.

The "server" is tests/fixtures/fake_server.py (``healthy``: it echoes), started by the demo's
conftest in place of the real command, which records every start."""

from __future__ import annotations

import pytest

from tests.plugin.test_server_faults import CONFTEST
from tests.support import GATE_TEST, LIVEBENCH_FIXTURES, REPO, THROUGHPUT_TEST

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures"
DEMO = f"""
model: demo
reference: bf16
precisions:
  bf16: {{checkpoint: org/demo}}
generation: {{temperature: 0.0, max_gen_toks: 8, seed: 3}}
tasks:
  arith:
    lmeval_task: tiny_arith
    metric: "integer_match,none"
    data_files: {{test: {FIXTURES / "tiny" / "arith.jsonl"}}}
    limit: 4
"""
SUITE = f"""{DEMO}  livebench:
    runner: livebench
    release: 2024-11-25
    questions_dir: {LIVEBENCH_FIXTURES / "tiny"}
    scorer: quantgate.tasks.scoring:livebench_tiny_score
    limit: 4
  lcb:
    runner: livecodebench
    limit: 2
    code: {{path: {FIXTURES / "lcb" / "problems.jsonl"}, workers: 1}}
"""


def demo_session(pytester, suites, *always):
    """``run(*args, root=)``: a pytest session of the demo suite's accuracy cases in a
    subprocess; ``starts(root=)``: how many servers its conftest has started under ``root``."""
    qg = pytester.path / "qg"

    def run(*args, root=qg):
        return pytester.runpytest_subprocess(
            "-m",
            "accuracy",
            f"--suites-dir={suites}",
            f"--quantgate-dir={root}",
            f"--baselines-dir={pytester.path / 'baselines'}",
            *always,
            *args,
        )

    def starts(root=qg) -> int:
        folder = root / "runs" / "starts"
        return len(list(folder.iterdir())) if folder.exists() else 0

    return run, starts


def test_a_cached_rerun_starts_no_server_and_from_cache_requires_it(
    gate_project, pytester, monkeypatch
):
    suites = gate_project(CONFTEST)
    (suites / "demo.yaml").write_text(SUITE)
    monkeypatch.setenv("FAKE_MODE", "healthy")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    run, starts = demo_session(pytester, suites)

    first = run("--snapshot-update")
    first.assert_outcomes(passed=3)
    assert starts() == 1
    # progress past the capture, as plain lines off a terminal: lm-eval, LiveBench, the code client
    first.stdout.fnmatch_lines_random(
        [
            "demo-arith-bf16: 4/4 items, * items/s, done in 0:00:*",
            "demo-livebench-bf16: 4/4 items, *tok/s, * items/s, done in *",
            "demo-lcb-bf16: 2/2 items, *tok/s, * items/s, done in *",
        ]
    )
    again = run()  # own history, all from the caches: the rows say no new run was compared
    again.assert_outcomes(passed=3)
    assert starts() == 1
    for task in ("arith", "livebench", "lcb"):
        again.stdout.re_match_lines([rf"demo-{task}-bf16 +own history .* \(cached: no new run"])
    run("--from-cache").assert_outcomes(passed=3)
    assert starts() == 1

    quiet = run("-q", "--snapshot-update", root=pytester.path / "quiet")  # generates again
    assert quiet.ret == 0 and " items, " not in quiet.stdout.str()  # -q: no progress lines

    fresh = pytester.path / "fresh"
    result = run("--from-cache", root=fresh)
    result.assert_outcomes(failed=3)
    assert starts(fresh) == 0
    out = result.stdout.str()
    for task in ("arith", "livebench", "lcb"):  # each case says it, in its failure
        assert f"--from-cache: demo-{task}-bf16 needs its server" in out
    assert "(4 of 4 items have no finished lm-eval run in the cache)" in out  # lm-eval
    assert "(4 of 4 answers are not in the cache)" in out  # LiveBench
    assert "(2 of 2 requests are not in the cache)" in out  # the code client


THROUGHPUT_SUITE = DEMO + "throughput: {requests: 4, max_tokens: 4, concurrency: 2}\n"


def test_a_cached_rerun_skips_throughput_instead_of_starting_a_server(
    gate_project, pytester, monkeypatch
):
    """A plain re-run whose task answers all come from the cache starts no server for the
    throughput case either: it skips, saying how to measure; the throughput cases selected
    alone start their server and measure."""
    conftest = CONFTEST.replace('"plugins.summary"', '"plugins.throughput", "plugins.summary"')
    suites = gate_project(conftest, test_demo_gate=GATE_TEST, test_demo_speed=THROUGHPUT_TEST)
    (suites / "demo.yaml").write_text(THROUGHPUT_SUITE)
    monkeypatch.setenv("FAKE_MODE", "healthy")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    run, starts = demo_session(pytester, suites, "-rs")

    run("--snapshot-update").assert_outcomes(passed=2)  # generates, then measures
    assert starts() == 1
    cached = run()
    cached.assert_outcomes(passed=1, skipped=1)
    assert starts() == 1  # no server for throughput alone
    cached.stdout.fnmatch_lines(
        [
            "*demo-throughput-bf16: every accuracy case of bf16 in this session (arith) came "
            "from the generation cache, so no server was started to measure*"
            '*pytest -m "accuracy and benchmark" --suite demo --precision bf16'
        ]
    )
    run("-m", "accuracy and benchmark").assert_outcomes(passed=1)  # throughput alone
    assert starts() == 2
