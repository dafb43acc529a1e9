"""A managed server that dies mid-run, through the real plugin and real lm-eval: the case
fails at once with the exit code and the log's tail, the precision's other cases fail fast with
the same message (no retrying a dead port, no restart), and the session ends with its summary
(no INTERNALERROR from formatting lm-eval's long tracebacks on CPython 3.11.7, cpython#106905).

The "server" is tests/fixtures/fake_server.py in ``die-on-chat`` mode (it exits with code 7 on
its first chat request), put in place of the real command by the demo's conftest."""

from __future__ import annotations

import pytest

from tests.support import GATE_PLUGINS, REPO

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures"
CONFTEST = (
    GATE_PLUGINS
    + f"""
import os, sys
from quantgate.serving import engines
from quantgate.serving.engines import ServerPlan
from quantgate.serving.servers import free_port

def plan(suite, precision, *, out_dir, cache_dir, worker_id=None, session=None):
    port = free_port()
    (out_dir / "starts").mkdir(parents=True, exist_ok=True)
    (out_dir / "starts" / str(port)).touch()
    return ServerPlan(
        engine="transformers", engine_version=None,
        checkpoint=suite.precisions[precision].checkpoint, model_path="tiny",
        argv=[sys.executable, {str(FIXTURES / "fake_server.py")!r}, os.environ["FAKE_MODE"],
              "--port", str(port), "--served-model-name", "tiny"],
        env=dict(os.environ), port=port, log_path=out_dir / f"server-{{port}}.log",
        startup_timeout=30, shutdown_timeout=5, served_model="tiny")

engines.plan_server = plan
"""
)
SUITE = f"""
model: demo
reference: bf16
precisions:
  bf16: {{checkpoint: org/demo}}
generation: {{temperature: 0.0, max_gen_toks: 8}}
tasks:
  arith:
    lmeval_task: tiny_arith
    metric: "integer_match,none"
    data_files: {{test: {FIXTURES / "tiny" / "arith.jsonl"}}}
    limit: 4
  words:
    lmeval_task: tiny_words
    metric: "exact_match,final"
    data_files: {{test: {FIXTURES / "tiny" / "words.jsonl"}}}
    limit: 4
"""


def test_a_server_dying_mid_run_fails_its_precision_fast_with_the_reason(
    gate_project, pytester, monkeypatch
):
    suites = gate_project(CONFTEST)
    (suites / "demo.yaml").write_text(SUITE)
    monkeypatch.setenv("FAKE_MODE", "die-on-chat")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the subprocess imports plugins/ from the repo
    qg = pytester.path / "qg"
    result = pytester.runpytest_subprocess(
        "-m", "accuracy", f"--suites-dir={suites}", f"--quantgate-dir={qg}", "-p", "no:randomly"
    )
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    result.assert_outcomes(failed=2)
    assert "short test summary info" in output
    first, second = output.split("[demo-words-bf16] _")
    first = first.split("[demo-arith-bf16] _")[1]
    assert "exited with 7" in first and "last lines of" in first
    assert "exited with 7" in second and "saw it die" in second
    assert len(list((qg / "runs" / "starts").iterdir())) == 1  # started once, never again


def test_a_failing_lm_eval_case_reports_normally_with_a_native_traceback(
    gate_project, pytester, monkeypatch
):
    """Probe #22: a server speaking garbage made lm-eval raise a long aiohttp traceback that
    pytest's AST-based repr turned into INTERNALERROR on CPython 3.11.7."""
    suites = gate_project(CONFTEST)
    (suites / "demo.yaml").write_text(SUITE)
    monkeypatch.setenv("FAKE_MODE", "garbage")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess(
        "-m", "accuracy", f"--suites-dir={suites}", f"--quantgate-dir={pytester.path / 'qg'}"
    )
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    result.assert_outcomes(failed=2)
    (headline,) = [line for line in output.splitlines() if line.startswith("demo-arith-bf16: ")]
    assert "HELLO THIS IS NOT HTTP" in headline  # the exception's own line comes first
    assert "Traceback (most recent call last):" in output or "earlier lines left out" in output
    assert "short test summary info" in output
