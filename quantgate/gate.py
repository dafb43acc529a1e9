"""The decision: is a candidate precision still as accurate as the reference?

Scores are per item (a question, a problem), each in [0, 1]: 0/1 for one greedy pass, the mean
over repeats otherwise. Both runs score the *same* items, so the comparison is paired::

    >>> ref = {"q1": 1.0, "q2": 1.0, "q3": 0.0}
    >>> cand = {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    >>> v = compare(ref, cand, margin=0.02)
    >>> v.outcome, v.flips_down, round(v.diff, 3)
    ('inconclusive', 1, -0.333)

``outcome`` is ``"pass"`` when non-inferiority is shown (the one-sided lower bound of the paired
mean difference is above ``-margin``), ``"fail"`` when the drop is both significant (upper bound
below 0) and beyond the margin (``diff < -margin``), and ``"inconclusive"`` otherwise: the
message then says how many items would settle it.

The interval is the adjusted Wald interval of Bonett & Price (2012) for paired proportions — one
pseudo-item added on each side of the difference — which keeps the false-fail rate at or below
alpha even with few discordant items. For scores averaged over ``repeats`` samples the
pseudo-items are one discordant *sample* each way (±1/repeats): a ±1 item would put a floor of
~11 pp under the MDE of a 30-item task however many samples it takes.

Other rules, for suites migrating from elsewhere (``method=``): ``"abs_drop"`` (diff >= -margin),
``"recovery"`` (candidate/reference >= threshold, llm-compressor), ``"rtol"`` (candidate >=
reference * (1 - threshold), vLLM CI), and ``"unpaired"`` for baselines that only stored a
:class:`Summary` (mean, stderr, n).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Outcome = Literal["pass", "fail", "inconclusive"]
Method = Literal["paired", "unpaired", "abs_drop", "recovery", "rtol"]
METHODS: tuple[str, ...] = ("paired", "unpaired", "abs_drop", "recovery", "rtol")
ItemScores = Mapping[Hashable, float]


class GateError(ValueError):
    """The inputs of a comparison are unusable (items that do not pair, scores out of range...)."""


@dataclass(frozen=True)
class Summary:
    """What an unpaired baseline keeps: ``Summary(mean=0.71, stderr=0.02, n=500)``."""

    mean: float
    stderr: float
    n: int

    @classmethod
    def of(cls, scores: ItemScores) -> Summary:
        """``Summary.of({"q1": 1.0, "q2": 0.0})`` -> mean 0.5, sample stderr, n 2."""
        values = _checked_values(scores, "scores")
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
    mde: float  # smallest true drop detected with power 1 - beta at this n and this pairing
    recovery: float  # candidate mean / reference mean
    required_n: int | None  # items that would settle an inconclusive verdict (None: n/a)
    message: str

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
) -> Verdict:
    """Gate ``candidate`` against ``reference``.

    ``compare(bf16_items, nvfp4_items, margin=0.02)`` is the paired non-inferiority gate;
    ``compare(Summary(0.7, 0.02, 500), nvfp4_items, margin=0.03, method="unpaired")`` uses a
    stored summary; ``compare(bf16_items, fp8_items, method="recovery", threshold=0.95)`` is the
    llm-compressor rule. ``repeats``: how many samples each item's score averages.
    """
    _check_probabilities(alpha=alpha, beta=beta)
    if repeats < 1:
        raise GateError(f"repeats must be at least 1, got {repeats!r}")
    if method not in METHODS:
        raise GateError(f"unknown gate method {method!r}; expected one of {', '.join(METHODS)}")
    if method in ("recovery", "rtol"):
        if threshold is None:
            raise GateError(f"gate method {method!r} needs a threshold (e.g. 0.95 or 0.08)")
    elif margin is None or not 0 <= margin < 1:
        raise GateError(f"gate method {method!r} needs a margin in [0, 1), got {margin!r}")
    if method == "paired":
        ref, cand = _paired(reference, candidate)
        return _paired_verdict(
            ref, cand, margin=margin, alpha=alpha, beta=beta, pseudo=1.0 / repeats
        )
    if isinstance(reference, Summary) or isinstance(candidate, Summary):
        ref_s, cand_s, flips = _as_summary(reference), _as_summary(candidate), (None, None)
    else:
        ref, cand = _paired(reference, candidate)
        ref_s, cand_s = Summary.of(dict(enumerate(ref))), Summary.of(dict(enumerate(cand)))
        flips = (int(np.sum(cand < ref)), int(np.sum(cand > ref)))
    return _unpaired_verdict(
        ref_s,
        cand_s,
        flips,
        method=method,
        margin=margin,
        threshold=threshold,
        alpha=alpha,
        beta=beta,
    )


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
    k2 = (stats.norm.ppf(1 - alpha) + stats.norm.ppf(1 - beta)) ** 2
    rho = max(discordance - diff * diff, 0.0)
    pseudo2 = 2.0 / (repeats * repeats)
    n = (k2 * rho + math.sqrt((k2 * rho) ** 2 + 4 * pseudo2 * room * room * k2)) / (2 * room * room)
    return max(int(math.ceil(n)), 2)


# --- paired -----------------------------------------------------------------------------------


def _paired_verdict(
    ref: np.ndarray,
    cand: np.ndarray,
    *,
    margin: float,
    alpha: float,
    beta: float,
    pseudo: float = 1.0,
) -> Verdict:
    n = len(ref)
    d = cand - ref
    # Bonett-Price adjusted Wald: one pseudo-item at -pseudo and one at +pseudo.
    n_adj = n + 2
    mean_adj = float(d.sum()) / n_adj
    var_adj = max((float(np.sum(d * d)) + 2.0 * pseudo * pseudo) / n_adj - mean_adj * mean_adj, 0.0)
    se = math.sqrt(var_adj / n_adj)
    q = float(stats.t.ppf(1 - alpha, n_adj - 1))
    ci_low, ci_high = max(mean_adj - q * se, -1.0), min(mean_adj + q * se, 1.0)
    mde = (q + float(stats.norm.ppf(1 - beta))) * se
    diff = float(d.mean())
    outcome = _outcome(diff, ci_low, ci_high, margin)
    need = None
    if outcome == "inconclusive":
        need = _settling_n(diff, float(np.mean(d * d)), margin, alpha, beta)
    return _verdict(
        outcome,
        "paired",
        n,
        float(ref.mean()),
        float(cand.mean()),
        diff,
        ci_low,
        ci_high,
        margin,
        None,
        alpha,
        (int(np.sum(d < 0)), int(np.sum(d > 0))),
        mde,
        need,
    )


def _settling_n(
    diff: float, discordance: float, margin: float, alpha: float, beta: float
) -> int | None:
    """The n at which the observed difference would pass, or fail, with power 1 - beta."""
    if diff > -margin:
        return required_n(margin, discordance, alpha, beta, diff)
    if diff == 0:  # margin 0 and no difference: no n settles it
        return None
    k2 = (stats.norm.ppf(1 - alpha) + stats.norm.ppf(1 - beta)) ** 2
    return max(int(math.ceil(k2 * max(discordance, 1e-12) / (diff * diff))), 2)


# --- unpaired and point rules -----------------------------------------------------------------


def _unpaired_verdict(
    ref: Summary,
    cand: Summary,
    flips: tuple[int | None, int | None],
    *,
    method: str,
    margin: float | None,
    threshold: float | None,
    alpha: float,
    beta: float,
) -> Verdict:
    diff = cand.mean - ref.mean
    se = math.hypot(ref.stderr, cand.stderr)
    z = float(stats.norm.ppf(1 - alpha))
    ci_low, ci_high = diff - z * se, diff + z * se
    mde = (z + float(stats.norm.ppf(1 - beta))) * se
    need = None
    if method == "unpaired":
        outcome = _outcome(diff, ci_low, ci_high, margin)
        if outcome == "inconclusive" and se > 0:
            # stderr shrinks as 1/sqrt(n): scale n until the interval clears the margin
            room = margin + diff if diff > -margin else -diff
            need = int(
                math.ceil(min(ref.n, cand.n) * ((z + stats.norm.ppf(1 - beta)) * se / room) ** 2)
            )
    elif method == "abs_drop":
        outcome = "pass" if diff >= -margin else "fail"
    elif method == "recovery":
        outcome = "pass" if _ratio(cand.mean, ref.mean) >= threshold else "fail"
    else:  # rtol
        outcome = "pass" if cand.mean >= ref.mean * (1 - threshold) else "fail"
    n = min(ref.n, cand.n)
    return _verdict(
        outcome,
        method,
        n,
        ref.mean,
        cand.mean,
        diff,
        ci_low,
        ci_high,
        margin,
        threshold,
        alpha,
        flips,
        mde,
        need,
    )


# --- helpers ----------------------------------------------------------------------------------


def _outcome(diff: float, ci_low: float, ci_high: float, margin: float) -> Outcome:
    if ci_low >= -margin:
        return "pass"
    if ci_high < 0 and diff < -margin:
        return "fail"
    return "inconclusive"


def _verdict(
    outcome: Outcome,
    method: str,
    n: int,
    ref_mean: float,
    cand_mean: float,
    diff: float,
    ci_low: float,
    ci_high: float,
    margin: float | None,
    threshold: float | None,
    alpha: float,
    flips: tuple[int | None, int | None],
    mde: float,
    need: int | None,
) -> Verdict:
    pp = 100.0
    rule = f"margin {margin * pp:.1f} pp" if margin is not None else f"threshold {threshold}"
    text = (
        f"{outcome}: {method}, n={n}, reference {ref_mean * pp:.1f}% -> candidate "
        f"{cand_mean * pp:.1f}% (diff {diff * pp:+.1f} pp, one-sided {1 - alpha:.0%} interval "
        f"[{ci_low * pp:+.1f}, {ci_high * pp:+.1f}] pp), {rule}, MDE {mde * pp:.1f} pp"
    )
    if flips[0] is not None:
        text += f", flips down {flips[0]} / up {flips[1]}"
    if outcome == "inconclusive":
        text += f"; too few items to tell a drop of {margin * pp:.1f} pp from noise" + (
            f": about {need} items would settle it" if need else ""
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
        alpha=alpha,
        flips_down=flips[0],
        flips_up=flips[1],
        mde=mde,
        recovery=_ratio(cand_mean, ref_mean),
        required_n=need,
        message=text,
    )


def _ratio(candidate: float, reference: float) -> float:
    if reference == 0:
        return 1.0 if candidate == 0 else math.inf
    return candidate / reference


def _paired(reference: object, candidate: object) -> tuple[np.ndarray, np.ndarray]:
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
    ref = _checked_values({k: reference[k] for k in keys}, "reference")
    cand = _checked_values({k: candidate[k] for k in keys}, "candidate")
    return ref, cand


def _as_summary(side: object) -> Summary:
    return side if isinstance(side, Summary) else Summary.of(side)


def _checked_values(scores: ItemScores, side: str) -> np.ndarray:
    if not scores:
        raise GateError(f"{side}: no items")
    values = np.asarray([float(v) for v in scores.values()], dtype=float)
    bad = [k for k, v in zip(scores, values) if not 0.0 <= v <= 1.0]  # also catches NaN
    if bad:
        raise GateError(
            f"{side}: scores must lie in [0, 1] (the mean over an item's repeats); "
            f"out of range: {_preview([f'{k}={scores[k]!r}' for k in bad])}"
        )
    return values


def _check_probabilities(**values: float) -> None:
    for name, value in values.items():
        if not 0 < value < 1:
            raise GateError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def _preview(keys: list, limit: int = 10) -> str:
    shown = ", ".join(str(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
