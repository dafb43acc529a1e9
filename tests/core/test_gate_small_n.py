"""Few repeat-averaged items (AIME: 30 problems x k samples): the exact sign-flip bound with a
skewness-corrected t (issue 12 item 4), by seeded simulation with the problems resampled."""

import functools
import itertools
import math

import numpy as np
import pytest

from quantgate.gate import compare, signflip_p

ALPHA = 0.05


@functools.lru_cache
def _keys(n: int) -> tuple[str, ...]:
    return tuple(f"p{i:02d}" for i in range(n))


def _items(values) -> dict[str, float]:
    values = np.asarray(values, dtype=float).tolist()
    return dict(zip(_keys(len(values)), values))


def _aime(rng, runs, acc, k, drop, n=30):
    """``runs`` benchmarks of ``n`` problems drawn afresh: solve rate ~ Beta(acc, 1 - acc), k
    samples each; the candidate's rates scaled by 1 - drop / acc (a mean drop of ``drop``)."""
    p = rng.beta(acc, 1 - acc, size=(runs, n))
    ref = rng.binomial(k, p) / k
    cand = rng.binomial(k, np.clip(p * (1 - drop / acc), 0, 1)) / k
    return ref, cand


def _rate(outcome, rng, runs, acc, k, margin, drop):
    ref, cand = _aime(rng, runs, acc, k, drop)
    return np.mean(
        [
            compare(_items(r), _items(c), margin=margin, repeats=k).outcome == outcome
            for r, c in zip(ref, cand)
        ]
    )


def _slack(runs):
    return 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)  # three Monte Carlo standard errors


@pytest.mark.parametrize(
    ("d", "repeats"),
    [([-2, -1, 0, 0, 1, -3, -4, 0, 2, -1], 4), ([-16, 0, 3, -5, -1, -1, 0, 7], 16)],
)
@pytest.mark.parametrize("delta", [-0.25, -0.05, 0.0, 0.03])
def test_signflip_p_is_the_exact_enumeration(d, repeats, delta):
    x = np.asarray(d) / repeats - delta
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(d))))
    flipped = signs @ np.abs(x)
    observed = x.sum()
    tol = 1e-12
    greater = np.mean(flipped >= observed - tol)  # evidence that the mean exceeds delta
    less = np.mean(flipped <= observed + tol)
    diffs = np.asarray(d) / repeats
    assert signflip_p(diffs, delta, repeats=repeats, alternative="greater") == pytest.approx(
        greater
    )
    assert signflip_p(diffs, delta, repeats=repeats, alternative="less") == pytest.approx(less)


def test_small_repeat_averaged_tasks_use_the_exact_bound_others_bonett_price():
    rng = np.random.default_rng(1)
    ref, cand = _aime(rng, 1, 0.6, 16, 0.0)
    small = compare(_items(ref[0]), _items(cand[0]), margin=0.05, repeats=16)
    assert small.interval == "sign-flip + Hall t"
    assert compare(_items(ref[0]), _items(cand[0]), margin=0.05).interval == "Bonett-Price t"
    ref, cand = _aime(rng, 1, 0.6, 16, 0.0, n=50)
    assert compare(_items(ref[0]), _items(cand[0]), margin=0.05, repeats=16).interval == (
        "Bonett-Price t"
    )


def test_the_exact_bound_brackets_the_mean_and_agrees_with_the_p_values():
    rng = np.random.default_rng(2)
    ref, cand = _aime(rng, 50, 0.5, 4, 0.05)
    for r, c in zip(ref, cand):
        v = compare(_items(r), _items(c), margin=0.12, repeats=4)
        assert v.ci_low <= v.diff <= v.ci_high
        assert (v.outcome == "pass") == (v.p_noninferiority <= ALPHA)
        # the bound is the inverted test: just inside it the test does not reject
        assert (v.ci_low > -0.12) == (v.p_noninferiority <= ALPHA)


@pytest.mark.parametrize(("acc", "k", "margin"), [(0.1, 16, 0.05), (0.3, 4, 0.12)])
def test_pass_at_a_drop_equal_to_the_margin_holds_alpha_problems_resampled(acc, k, margin):
    """The Bonett-Price t passed 0.14-0.16 (k = 16, acc 0.1) and 0.08-0.09 (k = 4, acc 0.3)."""
    rng = np.random.default_rng(20261202)
    runs = 2000
    assert _rate("pass", rng, runs, acc, k, margin, drop=margin) <= ALPHA + _slack(runs)


def test_no_drop_still_passes_and_never_fails_too_often():
    rng = np.random.default_rng(20261209)
    runs = 1000
    ref, cand = _aime(rng, runs, 0.6, 16, 0.0)
    outcomes = [
        compare(_items(r), _items(c), margin=0.05, repeats=16).outcome for r, c in zip(ref, cand)
    ]
    assert np.mean([o == "pass" for o in outcomes]) >= 0.6
    assert np.mean([o == "fail" for o in outcomes]) <= ALPHA


@pytest.mark.slow
@pytest.mark.parametrize(
    ("acc", "k", "margin"),
    [(a, 16, 0.05) for a in (0.1, 0.3, 0.6, 0.85)] + [(a, 4, 0.12) for a in (0.3, 0.6, 0.85)],
)
def test_error_rates_over_the_aime_grid(acc, k, margin):
    """P(PASS | drop = margin) <= alpha, P(FAIL | no drop) <= alpha, P(FAIL | 2x margin) high,
    problems resampled (k = 4 at acc 0.1 cannot drop by 12 pp: left out)."""
    rng = np.random.default_rng(20261210)
    assert _rate("pass", rng, 2000, acc, k, margin, drop=margin) <= ALPHA + _slack(2000)
    assert _rate("fail", rng, 1000, acc, k, margin, drop=0.0) <= ALPHA + _slack(1000)
    if 2 * margin <= acc:
        assert _rate("fail", rng, 300, acc, k, margin, drop=2 * margin) >= 0.85
