"""The statistical gate: semantics on hand-made vectors, properties by seeded simulation."""

import math

import numpy as np
import pytest

from quantgate.gate import GateError, Summary, compare, required_n

ALPHA = 0.05


def _items(values) -> dict[str, float]:
    return {f"q{i:04d}": float(v) for i, v in enumerate(values)}


def _paired_runs(rng, n, p_down, p_up, p_ref=0.7):
    """Reference 0/1 scores and a candidate where items flip down/up with the given rates."""
    ref = (rng.random(n) < p_ref).astype(float)
    u = rng.random(n)
    # a flip down needs a right reference answer, a flip up a wrong one: draw the discordant
    # pairs directly so the marginal rates are exactly p_down / p_up whatever p_ref is
    cand = ref.copy()
    down, up = u < p_down, (u >= p_down) & (u < p_down + p_up)
    ref[down], cand[down] = 1.0, 0.0
    ref[up], cand[up] = 0.0, 1.0
    return _items(ref), _items(cand)


def test_identical_vectors_at_n_1000_pass():
    rng = np.random.default_rng(1)
    ref = _items(rng.random(1000) < 0.8)
    v = compare(ref, dict(ref), margin=0.01)
    assert v.outcome == "pass"
    assert (v.n, v.diff, v.flips_down, v.flips_up, v.recovery) == (1000, 0.0, 0, 0, 1.0)
    assert -0.01 < v.ci_low < 0 < v.ci_high < 0.01


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
@pytest.mark.parametrize("margin", [0.0, 0.01, 0.02, 0.05])
def test_one_flip_down_at_n_30_is_never_fail(alpha, margin):
    ref = _items([1.0] * 20 + [0.0] * 10)
    cand = dict(ref, q0000=0.0)
    v = compare(ref, cand, margin=margin, alpha=alpha)
    assert v.outcome != "fail"
    assert v.flips_down == 1 and v.flips_up == 0
    assert v.diff == pytest.approx(-1 / 30)


def test_inconclusive_says_how_many_items_would_settle_it():
    ref = _items([1.0] * 20 + [0.0] * 10)
    cand = dict(ref, q0000=0.0)
    v = compare(ref, cand, margin=0.05)
    assert v.outcome == "inconclusive"
    assert v.required_n is not None and v.required_n > 30
    assert f"about {v.required_n} items would settle it" in v.message
    # and that many items with the same pattern would indeed pass
    scale = math.ceil(v.required_n / 30)
    big_ref = _items([1.0] * 20 * scale + [0.0] * 10 * scale)
    big_cand = dict(big_ref, **{f"q{i:04d}": 0.0 for i in range(scale)})
    assert compare(big_ref, big_cand, margin=0.05).outcome == "pass"


def test_large_significant_drop_fails_with_readable_numbers():
    ref = _items([1.0] * 400 + [0.0] * 100)
    cand = dict(ref, **{f"q{i:04d}": 0.0 for i in range(60)})  # 60 flips down: -12 pp
    v = compare(ref, cand, margin=0.03)
    assert v.outcome == "fail"
    assert (v.flips_down, v.flips_up) == (60, 0)
    assert v.diff == pytest.approx(-0.12)
    assert v.ci_high < 0 and v.ci_low < v.diff < v.ci_high
    assert v.recovery == pytest.approx(340 / 400)
    assert "fail: paired, n=500" in v.message and "flips down 60 / up 0" in v.message


def test_significant_drop_within_margin_is_not_fail():
    """A real but small drop (inside the declared margin) is not a failure."""
    ref = _items([1.0] * 9000 + [0.0] * 1000)
    cand = dict(ref, **{f"q{i:04d}": 0.0 for i in range(100)})  # -1 pp, highly significant
    v = compare(ref, cand, margin=0.02)
    assert v.ci_high < 0
    assert v.outcome == "pass"  # ci_low is above -2 pp


def test_repeat_averaged_scores_are_paired_too():
    ref = _items([0.75, 0.5, 1.0, 0.25] * 100)
    cand = _items([0.75, 0.5, 0.75, 0.25] * 100)  # one item in four lost a repeat
    v = compare(ref, cand, margin=0.1)
    assert v.outcome == "pass" and v.flips_down == 100 and v.flips_up == 0
    assert v.diff == pytest.approx(-0.0625)


def test_items_on_one_side_only_are_an_error_listing_them():
    ref = {"a": 1.0, "b": 0.0, "c": 1.0}
    cand = {"a": 1.0, "b": 1.0, "d": 0.0}
    with pytest.raises(GateError, match=r"1 only in reference: c; 1 only in candidate: d"):
        compare(ref, cand, margin=0.02)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_scores_outside_unit_interval_are_rejected(bad):
    with pytest.raises(GateError, match=r"candidate: scores must lie in \[0, 1\].*b="):
        compare({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": bad}, margin=0.02)


def test_bad_parameters_are_rejected():
    ref = {"a": 1.0}
    with pytest.raises(GateError, match="needs a margin"):
        compare(ref, ref)
    with pytest.raises(GateError, match="needs a threshold"):
        compare(ref, ref, method="recovery")
    with pytest.raises(GateError, match="unknown gate method 'mcnemar'"):
        compare(ref, ref, margin=0.1, method="mcnemar")
    with pytest.raises(GateError, match="alpha must lie strictly between 0 and 1"):
        compare(ref, ref, margin=0.1, alpha=1.5)
    with pytest.raises(GateError, match="method='unpaired'"):
        compare(Summary(0.5, 0.01, 100), ref, margin=0.1)


# --- the simpler rules, for users migrating -----------------------------------------------------


def test_abs_drop_recovery_and_rtol_rules():
    ref = _items([1.0] * 80 + [0.0] * 20)  # 0.80
    cand = dict(ref, **{f"q{i:04d}": 0.0 for i in range(6)})  # 0.74
    assert compare(ref, cand, method="abs_drop", margin=0.07).outcome == "pass"
    assert compare(ref, cand, method="abs_drop", margin=0.05).outcome == "fail"
    assert compare(ref, cand, method="recovery", threshold=0.92).outcome == "pass"  # 0.925
    assert compare(ref, cand, method="recovery", threshold=0.95).outcome == "fail"
    assert compare(ref, cand, method="rtol", threshold=0.08).outcome == "pass"  # >= 0.736
    v = compare(ref, cand, method="rtol", threshold=0.05)
    assert v.outcome == "fail" and v.flips_down == 6 and v.recovery == pytest.approx(0.925)


def test_unpaired_against_a_stored_summary():
    baseline = Summary(mean=0.80, stderr=0.01, n=1600)
    same = Summary(mean=0.80, stderr=0.01, n=1600)
    worse = Summary(mean=0.70, stderr=0.0115, n=1600)
    assert compare(baseline, same, method="unpaired", margin=0.05).outcome == "pass"
    v = compare(baseline, worse, method="unpaired", margin=0.05)
    assert v.outcome == "fail" and v.flips_down is None
    small = compare(
        Summary(0.8, 0.04, 100), Summary(0.78, 0.04, 100), method="unpaired", margin=0.05
    )
    assert small.outcome == "inconclusive" and small.required_n > 100


def test_summary_of_items_uses_the_sample_stderr():
    s = Summary.of({"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0})
    assert (s.mean, s.n) == (0.75, 4)
    assert s.stderr == pytest.approx(0.5 / 2)  # sd(ddof=1) = 0.5, sqrt(4) = 2


def test_required_n_matches_the_planning_table():
    # notes/gating.md: paired MDE ~ 2.49 * sqrt(rho / n); at rho = 0.06, n = 500 -> 2.7 pp
    n = required_n(0.027, 0.06)
    assert 480 <= n <= 560  # the pseudo-items add a little
    assert required_n(0.02, 0.10) > required_n(0.02, 0.05) > required_n(0.04, 0.05)
    assert required_n(0.02, 0.0) >= 2
    with pytest.raises(GateError, match="can never pass"):
        required_n(0.02, 0.1, diff=-0.03)


def test_mde_shrinks_with_n():
    rng = np.random.default_rng(3)
    small = compare(*_paired_runs(rng, 100, 0.05, 0.05), margin=0.02)
    large = compare(*_paired_runs(rng, 2500, 0.05, 0.05), margin=0.02)
    assert large.mde < small.mde / 3


# --- properties by seeded simulation -------------------------------------------------------------


def test_false_fail_rate_is_at_most_alpha_when_nothing_changed():
    """n = 200, 10 % discordant items split evenly: 'fail' in at most alpha of 2 000 runs."""
    rng = np.random.default_rng(20261121)
    runs = 2000
    fails = sum(
        compare(*_paired_runs(rng, 200, 0.05, 0.05), margin=0.0, alpha=ALPHA).outcome == "fail"
        for _ in range(runs)
    )
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)  # Monte Carlo standard errors
    assert fails / runs <= ALPHA + slack


def test_true_drop_of_twice_the_margin_fails_in_90_percent_of_runs():
    rng = np.random.default_rng(7)
    margin, runs = 0.02, 500
    # 7 % flip down, 3 % flip up: a true drop of 4 pp = 2 x margin, 10 % discordance
    fails = sum(
        compare(*_paired_runs(rng, 1000, 0.07, 0.03), margin=margin).outcome == "fail"
        for _ in range(runs)
    )
    assert fails / runs >= 0.90


def test_no_drop_passes_with_enough_items():
    """Power on the pass side: a candidate equal in distribution passes at the planned n."""
    rng = np.random.default_rng(11)
    n = required_n(0.03, 0.10)
    passes = sum(
        compare(*_paired_runs(rng, n, 0.05, 0.05), margin=0.03).outcome == "pass"
        for _ in range(300)
    )
    assert passes / 300 >= 0.75  # planned for 80 % power


# --- repeat-averaged scores (AIME: 30 problems, k samples each) ---------------------------------


def _aime_like(rng, n=30, k=16, drop=0.0):
    p = rng.beta(0.5, 0.5, size=n)
    ref = rng.binomial(k, p) / k
    cand = rng.binomial(k, np.clip(p - drop, 0, 1)) / k
    return _items(ref), _items(cand)


def test_repeat_averaged_false_fail_rate_is_at_most_alpha():
    rng = np.random.default_rng(30)
    runs = 2000
    fails = sum(
        compare(*_aime_like(rng), margin=0.0, repeats=16).outcome == "fail" for _ in range(runs)
    )
    assert fails / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_repeats_shrink_the_pseudo_items_and_the_mde():
    rng = np.random.default_rng(31)
    ref, cand = _aime_like(rng)
    one_sample_each, sixteen = (
        compare(ref, cand, margin=0.1),
        compare(ref, cand, margin=0.1, repeats=16),
    )
    assert sixteen.mde < 0.8 * one_sample_each.mde
    assert sixteen.diff == one_sample_each.diff
    identical = compare(ref, dict(ref), margin=0.05, repeats=16)
    assert identical.outcome == "pass" and identical.ci_low > -0.01


def test_a_true_drop_at_aime_scale_fails_with_enough_samples():
    rng = np.random.default_rng(32)
    fails = sum(
        compare(*_aime_like(rng, drop=0.25), margin=0.1, repeats=16).outcome == "fail"
        for _ in range(200)
    )
    assert fails / 200 >= 0.9


def test_repeats_must_be_positive():
    with pytest.raises(GateError, match="repeats must be at least 1"):
        compare({"a": 1.0}, {"a": 1.0}, margin=0.1, repeats=0)


def test_required_n_plans_with_the_repeats_pseudo_items():
    assert required_n(0.05, 0.012, repeats=16) <= 31  # answer-only AIME: 30 problems x 16
    assert required_n(0.05, 0.012) > 2 * required_n(0.05, 0.012, repeats=16)
