"""The migration rules reproduce their namesakes' expressions (issue 12 item 5), on random data.

- vLLM's lm-eval CI (``.buildkite/lm-eval-harness/test_lm_eval_correctness.py``, the versions
  with ``DEFAULT_RTOL = 0.08``): ``np.isclose(ground_truth, measured_value, rtol=rtol)``;
- its later one-sided form: ``measured_value >= ground_truth * (1 - rtol)``;
- llm-compressor (``tests/lmeval/test_lmeval.py``): ``round(compressed / base, 2) >= threshold``.
"""

import numpy as np
import pytest

from quantgate.gate import Summary, compare


def _random_pairs(seed, count=2000):
    """(reference items, candidate items) with means near each other, the thresholds' edges."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 300))
        p = rng.uniform(0.02, 0.98)
        ref = (rng.random(n) < p).astype(float)
        cand = (rng.random(n) < p * rng.uniform(0.85, 1.15)).astype(float)
        yield (
            {f"q{i}": float(v) for i, v in enumerate(ref)},
            {f"q{i}": float(v) for i, v in enumerate(cand)},
        )


def _means(ref, cand):
    return float(np.mean(list(ref.values()))), float(np.mean(list(cand.values())))


@pytest.mark.parametrize("rtol", [0.03, 0.05, 0.08])
def test_rtol_is_vllms_isclose(rtol):
    disagreements, gains_failed = 0, 0
    for ref, cand in _random_pairs(1):
        ground_truth, measured = _means(ref, cand)
        expected = bool(np.isclose(ground_truth, measured, rtol=rtol))
        v = compare(ref, cand, method="rtol", threshold=rtol)
        disagreements += (v.outcome == "pass") != expected
        gains_failed += measured > ground_truth and not expected
    assert disagreements == 0
    assert gains_failed > 0  # two-sided: a large gain fails too


def test_rtol_fails_a_gain_beyond_the_tolerance():
    ref = {f"q{i}": float(i < 50) for i in range(100)}  # 0.50
    cand = {f"q{i}": float(i < 60) for i in range(100)}  # 0.60: |0.5 - 0.6| > 0.08 * 0.6
    assert compare(ref, cand, method="rtol", threshold=0.08).outcome == "fail"
    assert compare(ref, cand, method="rtol_one_sided", threshold=0.08).outcome == "pass"


@pytest.mark.parametrize("rtol", [0.03, 0.08])
def test_rtol_one_sided_is_the_relative_floor(rtol):
    for ref, cand in _random_pairs(2):
        ground_truth, measured = _means(ref, cand)
        v = compare(ref, cand, method="rtol_one_sided", threshold=rtol)
        assert (v.outcome == "pass") == (measured >= ground_truth * (1 - rtol))


@pytest.mark.parametrize("threshold", [0.93, 0.95])
def test_recovery_is_llm_compressors_rounded_ratio(threshold):
    rounded_only = 0
    for ref, cand in _random_pairs(3):
        base, compressed = _means(ref, cand)
        if base == 0:
            continue  # llm-compressor divides by zero there
        expected = round(compressed / base, 2) >= threshold
        v = compare(ref, cand, method="recovery", threshold=threshold)
        assert (v.outcome == "pass") == expected
        rounded_only += expected and compressed / base < threshold
    assert rounded_only > 0  # the rounding matters: 0.945 passes 0.95


def test_recovery_rounding_on_a_hand_made_case():
    ref = {f"q{i}": float(i < 1000) for i in range(2000)}  # 0.5
    cand = {f"q{i}": float(i < 946) for i in range(2000)}  # 0.473: ratio 0.946 -> 0.95
    assert compare(ref, cand, method="recovery", threshold=0.95).outcome == "pass"
    worse = {f"q{i}": float(i < 944) for i in range(2000)}  # ratio 0.944 -> 0.94
    assert compare(ref, worse, method="recovery", threshold=0.95).outcome == "fail"


def test_the_point_rules_accept_stored_summaries():
    ref, cand = Summary(0.80, 0.01, 1000), Summary(0.75, 0.01, 1000)
    assert compare(ref, cand, method="rtol", threshold=0.08).outcome == "pass"
    assert compare(ref, cand, method="rtol_one_sided", threshold=0.05).outcome == "fail"
    assert compare(ref, cand, method="recovery", threshold=0.94).outcome == "pass"  # 0.9375 -> .94
