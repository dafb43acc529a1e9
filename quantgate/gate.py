"""The decision: is a candidate precision still as accurate as the reference?

Scores are per item (a question, a problem), each in [0, 1]: 0/1 for one greedy pass (or a graded
score), the mean over ``repeats`` samples otherwise. Both runs score the *same* items, so the
comparison is paired::

    >>> ref = {"q1": 1.0, "q2": 1.0, "q3": 0.0}
    >>> cand = {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    >>> v = compare(ref, cand, margin=0.02)
    >>> v.outcome, v.flips_down, round(v.diff, 3)
    ('inconclusive', 1, -0.333)

``outcome`` is ``"pass"`` when non-inferiority is shown (the one-sided lower bound of the paired
mean difference is above ``-margin``: ``p_noninferiority <= alpha``), ``"fail"`` when the drop is
both significant (upper bound below 0) and beyond the margin (``diff < -margin``), and
``"inconclusive"`` otherwise: the message then says how many items would settle it, the planning
n first (no true difference, the observed discordance), then the n if the observed difference is
real. A drop equal to the margin FAILs about half the time under that rule; ``fail="strict"``
FAILs only when the upper bound is below ``-margin`` (an alpha-level test of "the drop exceeds
the margin"). ``Verdict.mde`` is the MDE of the significance test, ``Verdict.fail_mde`` the drop
that FAIL catches with power ``1 - beta`` (what the summary shows).

The interval is the adjusted Wald interval of Bonett & Price (2012) for paired proportions — one
pseudo-item added on each side of the difference — which keeps the false-fail rate at or below
alpha even with few discordant items. For scores averaged over ``repeats`` samples the
pseudo-items are one discordant *sample* each way (±1/repeats) — unless every score on both
sides is 0 or 1: each item's samples then all agreed and carry one item's information, so the
gate uses ``repeats = 1`` (±1 pseudo-items, the 0/1 variance). The default FAIL also needs
the exact sign test on the items that differ (:func:`sign_test_p`), so one candidate sample
more never turns a verdict into FAIL. With fewer than
:data:`SMALL_N` repeat-averaged items the bounds are those of two tests that must both reject:
the exact sign-flip (permutation) test and Hall's (1992) skewness-corrected t; at n = 30 the
t interval alone passes drops equal to the margin up to 3x too often.

Other rules, for suites migrating from elsewhere (``method=``), each its namesake's expression
on the two means: ``"abs_drop"`` (``diff >= -margin``), ``"recovery"`` (llm-compressor:
``round(candidate / reference, 2) >= threshold``), ``"rtol"`` (vLLM's lm-eval CI:
``np.isclose(reference, candidate, rtol=threshold)``, two-sided, relative to the candidate),
``"rtol_one_sided"`` (``candidate >= reference * (1 - threshold)``), and ``"unpaired"`` for
baselines that only stored a :class:`Summary` (mean, stderr, n).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import optimize, special

Outcome = Literal["pass", "fail", "inconclusive"]
Method = Literal["paired", "unpaired", "abs_drop", "recovery", "rtol", "rtol_one_sided"]
METHODS: tuple[str, ...] = ("paired", "unpaired", "abs_drop", "recovery", "rtol", "rtol_one_sided")
THRESHOLD_METHODS: tuple[str, ...] = ("recovery", "rtol", "rtol_one_sided")  # no margin, no test
FailRule = Literal["default", "strict"]
FAIL_RULES: tuple[str, ...] = ("default", "strict")
SMALL_N = 50  # below this many repeat-averaged items: the exact sign-flip bound (with Hall's t)
ItemScores = Mapping[Hashable, float]

_INTERVALS = {
    "bp": "Bonett-Price t",
    "small": "sign-flip + Hall t",
    "wald": "Wald z",
    "point": "Wald z (display only)",
}


class GateError(ValueError):
    """The inputs of a comparison are unusable (items that do not pair, scores out of range...)."""


@dataclass(frozen=True)
class Summary:
    """What an unpaired baseline keeps: ``Summary(mean=0.71, stderr=0.02, n=500)``."""

    mean: float
    stderr: float
    n: int

    @classmethod
    def of(cls, scores: ItemScores, *, side: str = "scores", repeats: int = 1) -> Summary:
        """``Summary.of({"q1": 1.0, "q2": 0.0})`` -> mean 0.5, sample stderr, n 2."""
        values = _checked_values(scores, side, repeats)
        n = len(values)
        stderr = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        return cls(mean=float(np.mean(values)), stderr=stderr, n=n)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one gate, with everything needed to explain it."""

    outcome: Outcome
    method: str
    n: int
    reference_mean: float
    candidate_mean: float
    diff: float  # candidate - reference
    ci_low: float  # one-sided (1 - alpha) lower bound of the mean difference
    ci_high: float  # one-sided (1 - alpha) upper bound of the mean difference
    margin: float | None
    threshold: float | None
    alpha: float
    flips_down: int | None  # items scoring lower in the candidate (right -> wrong for 0/1 scores)
    flips_up: int | None
    mde: float  # the significance test's MDE: true drop found significant (< 0) with power 1-beta
    recovery: float  # candidate mean / reference mean
    required_n: int | None  # inconclusive: the planning n (no true difference); else None
    message: str
    # the true drop that FAILs with power 1 - beta under this verdict's FAIL rule (the summary's
    # MDE column): max(mde, margin + z_beta * se) by default, margin + mde under "strict"
    fail_mde: float | None = None
    # one-sided p-value of "the true difference is <= -margin" (small: non-inferior); None for
    # the point rules (abs_drop, recovery, rtol, rtol_one_sided)
    p_noninferiority: float | None = None
    # one-sided p-value of the FAIL rule's significance test: "true difference >= 0" by default,
    # ">= -margin" under "strict"; None for the point rules
    p_drop: float | None = None
    fail_rule: str = "default"
    # inconclusive: the n that would settle it if the observed difference were the true one
    required_n_observed: int | None = None
    interval: str = ""  # how the bounds were made (Bonett-Price t, sign-flip + Hall t, Wald z)
    # the repeats the bounds used: the declared ones, or 1 when every score on both sides is 0
    # or 1 (an item's samples all agreed: one item's information, not ``repeats``)
    repeats: int = 1
    # a sequential run's look (quantgate.sequential.look_verdict): the look's own p-values
    # (p_noninferiority, p_drop); the fields above then hold its repeated p-values, valid at the
    # design's overall alpha (what Holm across a suite takes). None for a fixed design.
    look_p: tuple[float | None, float | None] | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def compare(
    reference: ItemScores | Summary,
    candidate: ItemScores | Summary,
    *,
    margin: float | None = None,
    alpha: float = 0.05,
    beta: float = 0.2,
    method: Method = "paired",
    threshold: float | None = None,
    repeats: int = 1,
    fail: FailRule = "default",
) -> Verdict:
    """Gate ``candidate`` against ``reference``.

    ``compare(bf16_items, nvfp4_items, margin=0.02)`` is the paired non-inferiority gate;
    ``compare(Summary(0.7, 0.02, 500), nvfp4_items, margin=0.03, method="unpaired")`` uses a
    stored summary; ``compare(bf16_items, fp8_items, method="recovery", threshold=0.95)`` is the
    llm-compressor rule. ``repeats``: how many samples each item's score averages (with
    ``repeats > 1`` every score must be a multiple of ``1 / repeats``). ``fail="strict"``: FAIL
    only when the upper bound is below ``-margin``.
    """
    _check_probabilities(alpha=alpha, beta=beta)
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise GateError(f"repeats must be at least 1, got {repeats!r}")
    repeats = int(repeats)
    if method not in METHODS:
        raise GateError(f"unknown gate method {method!r}; expected one of {', '.join(METHODS)}")
    if fail not in FAIL_RULES:
        raise GateError(f"unknown fail rule {fail!r}; expected one of {', '.join(FAIL_RULES)}")
    if method in THRESHOLD_METHODS:
        if threshold is None:
            raise GateError(f"gate method {method!r} needs a threshold (e.g. 0.95 or 0.08)")
    elif margin is None or not 0 <= margin < 1:
        raise GateError(f"gate method {method!r} needs a margin in [0, 1), got {margin!r}")
    rule = _Rule(margin, alpha, beta, fail, repeats)
    if method == "paired":
        ref, cand = _paired(reference, candidate, repeats)
        small = repeats > 1 and len(ref) < SMALL_N  # declared repeat-averaged, few items
        return _paired_verdict(ref, cand, _agreed(rule, ref, cand), small=small)
    if isinstance(reference, Summary) or isinstance(candidate, Summary):
        ref_s = _as_summary(reference, "reference", repeats)
        cand_s = _as_summary(candidate, "candidate", repeats)
        flips: tuple[int | None, int | None] = (None, None)
    else:
        ref, cand = _paired(reference, candidate, repeats)
        rule = _agreed(rule, ref, cand)
        ref_s, cand_s = _summary(ref), _summary(cand)
        flips = (int(np.sum(cand < ref)), int(np.sum(cand > ref)))
    return _unpaired_verdict(ref_s, cand_s, flips, method=method, threshold=threshold, rule=rule)


def required_n(
    margin: float,
    discordance: float,
    alpha: float = 0.05,
    beta: float = 0.2,
    diff: float = 0.0,
    repeats: int = 1,
) -> int:
    """Items needed to show non-inferiority with power ``1 - beta``.

    ``discordance`` is the mean squared paired difference (for 0/1 scores: the share of items
    whose outcome differs between the runs); ``diff`` the true difference assumed.
    ``required_n(0.02, 0.10)`` -> 1566. Solves ``k * sqrt((discordance * n + 2 / repeats**2) /
    n**2) <= margin + diff`` with ``k = z(1 - alpha) + z(1 - beta)``: the pseudo-items the gate
    adds.
    """
    _check_probabilities(alpha=alpha, beta=beta)
    room = margin + diff
    if room <= 0:
        raise GateError(f"a true difference of {diff:+.4f} can never pass a margin of {margin}")
    return _n_for(room, max(discordance - diff * diff, 0.0), alpha, beta, repeats)


def signflip_p(
    differences: np.ndarray | list[float],
    delta: float = 0.0,
    *,
    repeats: int,
    alternative: Literal["greater", "less"] = "greater",
) -> float:
    """Exact one-sided p-value of the paired sign-flip (permutation) test of the mean
    difference against ``delta``, over all 2^n sign vectors (enumerated by dynamic programming on
    the integer sample counts ``d * repeats``).

    ``alternative="greater"``: small when the mean exceeds ``delta`` (non-inferiority at
    ``delta = -margin``); ``"less"``: small when it is below (a significant drop at 0).

        >>> signflip_p([-1.0, -1.0, -1.0] + [0.0] * 27, 0.0, repeats=16, alternative="less")
        0.125
    """
    d = np.asarray(differences, dtype=float)
    table = _SignFlip(np.rint(d * repeats).astype(np.int64), repeats)
    return table.p(delta, alternative)


def sign_test_p(differences) -> float:
    """One-sided exact sign test that the differences lean negative: ``P(X <= up)`` for ``X ~
    Binomial(up + down, 1/2)``, over the non-zero differences only (1.0 when none)."""
    d = np.asarray(differences, dtype=float)
    down, up = int(np.sum(d < 0)), int(np.sum(d > 0))
    return float(special.bdtr(up, up + down, 0.5)) if up + down else 1.0


# --- paired -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    margin: float | None
    alpha: float
    beta: float
    fail: str
    repeats: int

    @property
    def z_beta(self) -> float:
        return _z(1 - self.beta)

    @property
    def drop_null(self) -> float:
        """The difference the FAIL rule's significance test is against."""
        return -self.margin if self.fail == "strict" else 0.0

    def outcome(self, diff: float, passed: bool, significant: bool) -> Outcome:
        if passed:
            return "pass"
        if significant and (self.fail == "strict" or diff < -self.margin):
            return "fail"
        return "inconclusive"

    def fail_mde(self, mde: float, se: float) -> float:
        if self.fail == "strict":
            return self.margin + mde
        return max(mde, self.margin + self.z_beta * se)


def effective_repeats(repeats: int, *sides) -> int:
    """1 when every score on every side is 0 or 1, else ``repeats``: an item whose samples all
    agreed carries one item's information, and pseudo-items of +-1/repeats (and a variance
    floor to match) would trust ``repeats`` times the evidence there is (3 down-flips of 50
    FAILed with ``repeats=16``; exact one-sided p 0.125)."""
    if repeats == 1:
        return 1
    for side in sides:
        values = np.asarray(side, dtype=float)
        if np.any((values != 0.0) & (values != 1.0)):
            return repeats
    return 1


def _agreed(rule: _Rule, *sides: np.ndarray) -> _Rule:
    """The rule at :func:`effective_repeats`."""
    return replace(rule, repeats=effective_repeats(rule.repeats, *sides))


def _paired_verdict(ref: np.ndarray, cand: np.ndarray, rule: _Rule, *, small: bool) -> Verdict:
    """``small``: few items of a task declared repeat-averaged (the exact sign-flip bound with
    Hall's t, at ``rule.repeats``, which :func:`_agreed` has already set to 1 for 0/1 data)."""
    n = len(ref)
    d = cand - ref
    diff = float(d.mean())
    pseudo = 1.0 / rule.repeats
    if small:
        b = _small_n_bounds(d, rule)
        interval = "small"
    else:
        b = _bonett_price_bounds(d, pseudo, rule)
        interval = "bp"
    ci_low, ci_high, p_ni, p_drop, se, q, passed, significant = b
    if not small and rule.fail == "default":
        # the drop must also be significant by the exact sign test on the items that differ
        # (McNemar's exact test for 0/1 scores): the t interval alone FAILed 3 down-flips of 50
        # (exact p 0.125) once one other item was 1/16 better, its pseudo-items shrunk
        p_drop = max(p_drop, sign_test_p(d))
        significant = significant and p_drop < rule.alpha
    outcome = rule.outcome(diff, passed, significant)
    mde = (q + rule.z_beta) * se
    need = need_observed = None
    if outcome == "inconclusive":
        discordance = float(np.mean(d * d))
        need = _planning_n(rule, lambda room: _n_for(room, discordance, *_ab(rule), rule.repeats))
        need_observed = _observed_n(
            rule,
            diff,
            lambda room: _n_for(
                room, max(discordance - diff * diff, 0.0), *_ab(rule), rule.repeats
            ),
        )
    return _verdict(
        outcome,
        "paired",
        n,
        float(ref.mean()),
        float(cand.mean()),
        diff,
        ci_low,
        ci_high,
        rule,
        None,
        (int(np.sum(d < 0)), int(np.sum(d > 0))),
        mde,
        _paired_fail_mde(n, float(np.mean(d * d)) - diff * diff, rule, q, interval == "bp"),
        (p_ni, p_drop),
        (need, need_observed),
        interval,
    )


def _bonett_price_bounds(d: np.ndarray, pseudo: float, rule: _Rule) -> tuple:
    """Bonett-Price adjusted Wald: one pseudo-item at -pseudo and one at +pseudo, a t quantile."""
    n_adj = len(d) + 2
    mean_adj = float(d.sum()) / n_adj
    var_adj = max((float(np.sum(d * d)) + 2.0 * pseudo * pseudo) / n_adj - mean_adj * mean_adj, 0.0)
    se = math.sqrt(var_adj / n_adj)
    df = n_adj - 1
    q = _t_ppf(1 - rule.alpha, df)
    low, high = mean_adj - q * se, mean_adj + q * se
    p_ni = _t_sf((mean_adj + rule.margin) / se, df)
    p_drop = _t_cdf((mean_adj - rule.drop_null) / se, df)
    return (
        max(low, -1.0),
        min(high, 1.0),
        p_ni,
        p_drop,
        se,
        q,
        low >= -rule.margin,
        high < rule.drop_null,
    )


def _small_n_bounds(d: np.ndarray, rule: _Rule) -> tuple:
    """Few repeat-averaged items: PASS (and the drop's significance) needs both the exact
    sign-flip test and Hall's skewness-corrected t to reject, so each p-value is the larger of
    the two and each bound the wider. The sign-flip is exact for differences symmetric under the
    null; Hall's t covers the skew of problem-level drops (a drop concentrated on the problems
    the reference solves) that the sign-flip and the plain t both miss."""
    n, alpha = len(d), rule.alpha
    flips = _SignFlip(np.rint(d * rule.repeats).astype(np.int64), rule.repeats)
    hall = _HallT(d, 1.0 / rule.repeats)
    p_ni = max(flips.p(-rule.margin, "greater"), hall.p(-rule.margin, "greater"))
    p_drop = max(flips.p(rule.drop_null, "less"), hall.p(rule.drop_null, "less"))
    low = min(flips.lower(alpha), hall.lower(alpha))
    high = max(flips.upper(alpha), hall.upper(alpha))
    q = _t_ppf(1 - alpha, max(n - 1, 1))
    return (
        max(low, -1.0),
        min(high, 1.0),
        p_ni,
        p_drop,
        hall.se,
        q,
        p_ni <= alpha,
        p_drop <= alpha,
    )


class _SignFlip:
    """The exact sign-flip distribution of integer differences ``x`` (``d * repeats``).

    Flipping the signs of a subset F of the centred differences ``x_i - delta * k`` changes the
    sum by ``-2 * sum_F (x_i - delta * k)``, so ``P(flipped sum >= observed) = P(sum_F x_i <=
    delta * k * |F|)`` over uniform subsets F: one table of ``P(|F| = c, sum_F x = s)`` serves
    every ``delta``, and the bounds are quantiles of the subset means ``s / (k c)``.
    """

    def __init__(self, x: np.ndarray, repeats: int) -> None:
        self.k = repeats
        n = len(x)
        offset = int(np.abs(x).sum())
        # counts of subsets (exact in float64 up to 2^53: n < 53), a knapsack over the items
        table = np.zeros((n + 1, 2 * offset + 1))
        table[0, offset] = 1.0
        width = table.shape[1]
        for i, xi in enumerate(x.tolist()):
            rows = slice(1, i + 2), slice(0, i + 1)  # subsets of the first i items: |F| <= i
            if xi >= 0:
                table[rows[0], xi:] += table[rows[1], : width - xi]
            else:
                table[rows[0], :xi] += table[rows[1], -xi:]
        table /= 2.0**n
        self.table, self.offset = table, offset
        self.empty = float(table[0, offset])  # F = {}: the observed signs, always counted
        counts, sums = np.nonzero(table[1:])
        self.weights = table[1 + counts, sums]
        self.means = (sums - offset) / (self.k * (counts + 1.0))

    def p(self, delta: float, alternative: str) -> float:
        sums = np.arange(self.table.shape[1]) - self.offset
        limit = delta * self.k * np.arange(self.table.shape[0])[:, None]
        tol = 1e-9
        mask = sums[None, :] <= limit + tol if alternative == "greater" else sums >= limit - tol
        return float(min(np.sum(self.table * mask), 1.0))

    def lower(self, alpha: float) -> float:
        """sup{delta: p(delta, "greater") <= alpha}: a subset mean (-1 when none rejects)."""
        return self._bound(self.means, alpha, ascending=True)

    def upper(self, alpha: float) -> float:
        return self._bound(self.means, alpha, ascending=False)

    def _bound(self, means: np.ndarray, alpha: float, *, ascending: bool) -> float:
        if self.empty > alpha or not len(means):
            return -1.0 if ascending else 1.0
        order = np.argsort(means if ascending else -means, kind="stable")
        cumulative = self.empty + np.cumsum(self.weights[order])
        beyond = np.nonzero(cumulative > alpha * (1 + 1e-12))[0]
        if not len(beyond):
            return -1.0 if ascending else 1.0
        return float(means[order[beyond[0]]])


class _HallT:
    """Hall's (1992) transformation of the t statistic, removing the first-order effect of the
    differences' skewness: ``g(T) = T + gamma T^2 / (3 sqrt n) + gamma^2 T^3 / (27 n) + gamma /
    (6 sqrt n)``, compared with a t(n - 1) quantile. ``T = sqrt(n) (mean - delta) / s_delta``
    takes its variance about the null value ``delta`` (as a score test does: ``s_delta^2 =
    (sum (d - delta)^2 + 2 / repeats^2) / (n - 1)``), which the skewed small samples need; the
    two pseudo-items at +-1/repeats only floor it, so identical runs are not certain."""

    def __init__(self, d: np.ndarray, pseudo: float) -> None:
        n = len(d)
        self.n, self.mean = n, float(d.mean())
        c = d - self.mean
        floor = 2.0 * pseudo * pseudo
        self.df = max(n - 1, 1)
        self.centred = (float(np.sum(c * c)) + floor) / self.df  # s^2 about the mean
        spread = math.sqrt(float(np.mean(c * c)) + floor / n)
        self.gamma = float(np.mean(c**3)) / spread**3
        self.se = math.sqrt(self.centred / n)  # for the MDE

    def _g(self, t: float) -> float:
        a, b = self.gamma / (3 * math.sqrt(self.n)), self.gamma / (6 * math.sqrt(self.n))
        if abs(a) < 1e-12:
            return t + b
        return ((1 + a * t) ** 3 - 1) / (3 * a) + b

    def _g_inverse(self, y: float) -> float:
        a, b = self.gamma / (3 * math.sqrt(self.n)), self.gamma / (6 * math.sqrt(self.n))
        if abs(a) < 1e-12:
            return y - b
        return (float(np.cbrt(1 + 3 * a * (y - b))) - 1) / a

    def _t(self, delta: float) -> float:
        u = self.mean - delta
        return math.sqrt(self.n) * u / math.sqrt(self.centred + self.n * u * u / self.df)

    def p(self, delta: float, alternative: str) -> float:
        g = self._g(self._t(delta))
        return _t_sf(g, self.df) if alternative == "greater" else _t_cdf(g, self.df)

    def _bound(self, quantile: float, none: float) -> float:
        """The delta at which g(T(delta)) equals ``quantile``: T(delta) is monotone in delta and
        bounded by +-sqrt(n - 1), so it solves a quadratic; ``none`` when no delta reaches it."""
        t = self._g_inverse(quantile)
        room = 1 - t * t / self.df
        if room <= 0:
            return none
        return self.mean - t * math.sqrt(self.centred / (self.n * room))

    def lower(self, alpha: float) -> float:
        return self._bound(_t_ppf(1 - alpha, self.df), -1.0)

    def upper(self, alpha: float) -> float:
        return self._bound(_t_ppf(alpha, self.df), 1.0)


def _paired_fail_mde(n: int, variance: float, rule: _Rule, q: float, shrunk: bool) -> float:
    """The true drop that FAILs with power 1 - beta at this n: solves P(FAIL | drop) = 1 - beta
    under the normal approximation of the verdict's own rule. The drop adds discordant samples
    one way (variance ``variance + drop / repeats - drop^2``: exact for 0/1 scores), and the
    bound is taken where the observed mean sits at the FAIL cut (the standard error there, not
    at the true drop: with 0/1 scores a mean nearer 0 has the larger spread), with a continuity
    correction for the grid the mean difference lives on."""
    h = 1.0 / rule.repeats
    floor = 2 * h * h
    strict = rule.fail == "strict"

    def cut(var: float, drop: float) -> float | None:
        """The largest observed mean difference that FAILs (None: none does at this n)."""
        if shrunk:  # Bonett-Price: m = mean * n / N, se^2 = (A - m^2) / N, N = n + 2
            big_n = n + 2
            a = (n * (var + drop * drop) + floor) / big_n
            if not strict:
                return min(-q * math.sqrt(a / (big_n + q * q)) * big_n / n, -rule.margin)
            c2, c1 = big_n + q * q, 2 * big_n * rule.margin
            c0 = big_n * rule.margin**2 - q * q * a
            disc = c1 * c1 - 4 * c2 * c0
            return (-c1 - math.sqrt(max(disc, 0.0))) / (2 * c2) * big_n / n
        # few repeat-averaged items: t about the null value (Hall's, skew left out)
        if n - 1 <= q * q:
            return None
        null = rule.drop_null
        at = null - q * math.sqrt((n * var + floor) / (n * (n - 1 - q * q)))
        return at if strict else min(at, -rule.margin)

    def power(drop: float) -> float:
        var = max(variance + drop * h - drop * drop, 1e-12)
        limit = cut(var, drop)
        if limit is None:
            return -(1 - rule.beta)
        limit -= h / (2 * n)  # continuity: the mean difference moves in steps of 1/(repeats n)
        return float(special.ndtr((limit + drop) / math.sqrt(var / n))) - (1 - rule.beta)

    if power(1.0) < 0:
        return 1.0  # no drop FAILs with that power at this n
    return float(optimize.brentq(power, 0.0, 1.0, xtol=1e-6))


# --- unpaired and point rules -----------------------------------------------------------------


def _unpaired_verdict(
    ref: Summary,
    cand: Summary,
    flips: tuple[int | None, int | None],
    *,
    method: str,
    threshold: float | None,
    rule: _Rule,
) -> Verdict:
    diff = cand.mean - ref.mean
    pseudo = 1.0 / rule.repeats
    se = math.hypot(_adjusted_se(ref, pseudo), _adjusted_se(cand, pseudo))
    z = _z(1 - rule.alpha)
    low, high = diff - z * se, diff + z * se
    mde = (z + rule.z_beta) * se
    n = min(ref.n, cand.n)
    need = need_observed = p_ni = p_drop = None
    if method == "unpaired":
        p_ni = float(special.ndtr(-(diff + rule.margin) / se))
        p_drop = float(special.ndtr((diff - rule.drop_null) / se))
        outcome = rule.outcome(diff, low >= -rule.margin, high < rule.drop_null)
        fail_mde = rule.fail_mde(mde, se)
        if outcome == "inconclusive":
            # the stderr shrinks as 1/sqrt(n): scale n until the interval clears the margin
            k = z + rule.z_beta

            def scaled(room: float) -> int:
                return max(int(math.ceil(n * (k * se / room) ** 2)), 2)

            need = _planning_n(rule, scaled)
            need_observed = _observed_n(rule, diff, scaled)
        interval = "wald"
    else:
        outcome, drop_margin = _point_rule(method, ref.mean, cand.mean, rule.margin, threshold)
        fail_mde = drop_margin + rule.z_beta * se
        interval = "point"
    return _verdict(
        outcome,
        method,
        n,
        ref.mean,
        cand.mean,
        diff,
        max(low, -1.0),
        min(high, 1.0),
        rule,
        threshold,
        flips,
        mde,
        fail_mde,
        (p_ni, p_drop),
        (need, need_observed),
        interval,
    )


def _point_rule(
    method: str, reference: float, candidate: float, margin: float | None, threshold: float | None
) -> tuple[Outcome, float]:
    """A migration rule's outcome, and the drop beyond which it fails (for ``fail_mde``)."""
    if method == "abs_drop":
        return ("pass" if candidate - reference >= -margin else "fail"), margin
    if method == "recovery":  # llm-compressor tests/lmeval/test_lmeval.py
        passed = round(_ratio(candidate, reference), 2) >= threshold
        return ("pass" if passed else "fail"), max(reference * (1 - threshold + 0.005), 0.0)
    if method == "rtol":  # vLLM .buildkite/lm-eval-harness: np.isclose(ground_truth, measured)
        passed = bool(np.isclose(reference, candidate, rtol=threshold))
        return ("pass" if passed else "fail"), reference * threshold / (1 + threshold)
    passed = candidate >= reference * (1 - threshold)  # rtol_one_sided
    return ("pass" if passed else "fail"), reference * threshold


def _adjusted_se(side: Summary, pseudo: float) -> float:
    """The stderr of a side's mean with two pseudo-items at its mean +- pseudo (as the paired
    gate adds one discordant pseudo-item each way): a constant side, or a single item, is not
    known exactly."""
    n = side.n
    squares = side.stderr * side.stderr * n * (n - 1) if n > 1 else 0.0
    variance = (squares + 2.0 * pseudo * pseudo) / (n + 1)
    return math.sqrt(variance / (n + 2))


# --- how many items would settle it -------------------------------------------------------------


def _ab(rule: _Rule) -> tuple[float, float]:
    return rule.alpha, rule.beta


def _n_for(room: float, variance: float, alpha: float, beta: float, repeats: int) -> int:
    """The n at which ``k * sqrt((variance * n + 2 / repeats**2) / n**2) <= room``."""
    k2 = (_z(1 - alpha) + _z(1 - beta)) ** 2
    pseudo2 = 2.0 / (repeats * repeats)
    kv = k2 * variance
    n = (kv + math.sqrt(kv * kv + 4 * pseudo2 * room * room * k2)) / (2 * room * room)
    return max(int(math.ceil(n)), 2)


def _planning_n(rule: _Rule, n_for) -> int | None:
    """Items to show non-inferiority with power 1 - beta at no true difference (None at margin
    0: no n does)."""
    return n_for(rule.margin) if rule.margin > 0 else None


def _observed_n(rule: _Rule, diff: float, n_for) -> int | None:
    """Items to settle it if ``diff`` were the true difference: PASS above -margin, FAIL below."""
    if diff > -rule.margin:
        room = rule.margin + diff
    else:
        room = -diff - rule.margin if rule.fail == "strict" else -diff
    return n_for(room) if room > 0 else None


# --- helpers ----------------------------------------------------------------------------------


def _verdict(
    outcome: Outcome,
    method: str,
    n: int,
    ref_mean: float,
    cand_mean: float,
    diff: float,
    ci_low: float,
    ci_high: float,
    rule: _Rule,
    threshold: float | None,
    flips: tuple[int | None, int | None],
    mde: float,
    fail_mde: float,
    p_values: tuple[float | None, float | None],
    needs: tuple[int | None, int | None],
    interval: str,
) -> Verdict:
    pp = 100.0
    margin = rule.margin if method not in THRESHOLD_METHODS else None
    text_rule = f"margin {margin * pp:.1f} pp" if margin is not None else f"threshold {threshold}"
    if rule.fail == "strict" and margin is not None and method in ("paired", "unpaired"):
        text_rule += ", strict FAIL rule (upper bound < -margin)"
    text = (
        f"{outcome}: {method}, n={n}, reference {ref_mean * pp:.1f}% -> candidate "
        f"{cand_mean * pp:.1f}% (diff {diff * pp:+.1f} pp, one-sided {1 - rule.alpha:.0%} "
        f"interval [{ci_low * pp:+.1f}, {ci_high * pp:+.1f}] pp), {text_rule}, MDE "
        f"{mde * pp:.1f} pp (a drop of {fail_mde * pp:.1f} pp FAILs with "
        f"{1 - rule.beta:.0%} power)"
    )
    if flips[0] is not None:
        text += f", flips down {flips[0]} / up {flips[1]}"
    need, need_observed = needs
    if outcome == "inconclusive":
        text += f"; too few items to tell a drop of {margin * pp:.1f} pp from noise"
        if need:
            text += f": about {need} items would settle it (at no true difference)"
        if need_observed:
            settles = "FAIL" if diff < -margin else "PASS"
            text += (
                f"{';' if need else ':'} if the observed {diff * pp:+.1f} pp is real, about "
                f"{need_observed} items would {settles} it"
            )
    return Verdict(
        outcome=outcome,
        method=method,
        n=n,
        reference_mean=ref_mean,
        candidate_mean=cand_mean,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        margin=margin,
        threshold=threshold,
        alpha=rule.alpha,
        flips_down=flips[0],
        flips_up=flips[1],
        mde=mde,
        recovery=_ratio(cand_mean, ref_mean),
        required_n=need,
        message=text,
        fail_mde=fail_mde,
        p_noninferiority=p_values[0],
        p_drop=p_values[1],
        fail_rule=rule.fail,
        required_n_observed=need_observed,
        interval=_INTERVALS[interval],
        repeats=rule.repeats,
    )


def _z(p: float) -> float:
    """The standard normal quantile (scipy.special: the gate runs in simulations' loops)."""
    return float(special.ndtri(p))


def _t_ppf(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def _t_sf(x: float, df: float) -> float:
    return float(special.stdtr(df, -x))


def _t_cdf(x: float, df: float) -> float:
    return float(special.stdtr(df, x))


def _ratio(candidate: float, reference: float) -> float:
    if reference == 0:
        return 1.0 if candidate == 0 else math.inf
    return candidate / reference


def _paired(reference: object, candidate: object, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(reference, Summary) or isinstance(candidate, Summary):
        raise GateError(
            "the paired gate needs per-item scores on both sides; a baseline that only"
            " stores mean/stderr/n can be gated with method='unpaired'"
        )
    only_ref = [k for k in reference if k not in candidate]
    only_cand = [k for k in candidate if k not in reference]
    if only_ref or only_cand:
        raise GateError(
            "reference and candidate must score the same items; "
            + "; ".join(
                f"{len(ks)} only in {side}: {_preview(ks)}"
                for side, ks in (("reference", only_ref), ("candidate", only_cand))
                if ks
            )
        )
    keys = list(reference)
    if not keys:
        raise GateError("no items to compare")
    ref = _checked_values({k: reference[k] for k in keys}, "reference", repeats)
    cand = _checked_values({k: candidate[k] for k in keys}, "candidate", repeats)
    return ref, cand


def _summary(values: np.ndarray) -> Summary:
    n = len(values)
    stderr = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return Summary(mean=float(np.mean(values)), stderr=stderr, n=n)


def _as_summary(side: object, name: str, repeats: int) -> Summary:
    return side if isinstance(side, Summary) else Summary.of(side, side=name, repeats=repeats)


_PLAIN_NUMBERS = {float, int, np.float64, np.float32, np.int64}


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not math.isnan(float(value))


def _checked_values(scores: ItemScores, side: str, repeats: int = 1) -> np.ndarray:
    """The scores as floats in [0, 1]; with ``repeats > 1`` snapped to multiples of 1/repeats
    (each must be one within 1e-9). A GateError names the side and the offending items."""
    if not scores:
        raise GateError(f"{side}: no items")
    plain = set(map(type, scores.values())) <= _PLAIN_NUMBERS  # the fast path: no None, "1"
    if plain:
        values = np.fromiter(scores.values(), dtype=float, count=len(scores))
        is_nan = np.isnan(values)
    if not plain or is_nan.any():
        not_numbers = [k for k, v in scores.items() if not _is_number(v)]
        if not_numbers:
            raise GateError(
                f"{side}: scores must be numbers in [0, 1] (the mean over an item's repeats); "
                f"not a number: {_preview([f'{k}={scores[k]!r}' for k in not_numbers])}"
            )
        values = np.fromiter((float(v) for v in scores.values()), dtype=float, count=len(scores))
    outside = (values < 0.0) | (values > 1.0)
    if outside.any():
        bad = [k for k, out in zip(scores, outside) if out]
        raise GateError(
            f"{side}: scores must lie in [0, 1] (the mean over an item's repeats); "
            f"out of range: {_preview([f'{k}={scores[k]!r}' for k in bad])}"
        )
    if repeats > 1:
        counts = values * repeats
        not_counts = np.abs(counts - np.rint(counts)) > 1e-9
        if not_counts.any():
            off = [k for k, bad in zip(scores, not_counts) if bad]
            raise GateError(
                f"{side}: with repeats={repeats} every score is the mean of {repeats} samples, "
                f"so one of the multiples of 1/{repeats}; not so: "
                f"{_preview([f'{k}={scores[k]!r}' for k in off])}"
            )
        values = np.rint(counts) / repeats
    return values


def _check_probabilities(**values: float) -> None:
    for name, value in values.items():
        if not 0 < value < 1:
            raise GateError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def _preview(keys: list, limit: int = 10) -> str:
    shown = ", ".join(str(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
