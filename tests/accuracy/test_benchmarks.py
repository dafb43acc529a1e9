"""The accuracy gate: one case per (suite, task, precision) of tests/accuracy/suites/*.yaml.

pytest -m accuracy --precision nvfp4                      # gate one precision
pytest -m accuracy --precision bf16 --snapshot-update     # refresh the BF16 baselines
"""

import pytest

# slow: each case starts (or reuses) a real server; `-m "not slow"` replaces the default
# `-m "not accuracy"`, so the quick tier must not pick these up
pytestmark = [pytest.mark.accuracy, pytest.mark.slow]


def test_benchmark(accuracy_case, evaluate, baseline):
    run = evaluate(accuracy_case)
    baseline.check(accuracy_case, run)


def test_suite_verdict(suite_case, suite_verdict):
    """One verdict per precision across its tasks (Holm), after the precision's task cases."""
    suite_verdict.check(suite_case)
