"""Sequential early stopping: a candidate's items in K chunks, the gate checked after each, and no
more generation once PASS or FAIL is settled (issue 12, item 7).

    >>> design = Design.plan([str(i) for i in range(150)], looks=4, alpha=0.05, seed=1234)
    >>> design.sizes
    (38, 75, 113, 150)
    >>> [round(c, 2) for c in design.boundaries]
    [3.72, 2.54, 2.01, 1.72]
    >>> f"{design.nominal_alphas[0]:.1e}", round(design.nominal_alphas[-1], 4)
    ('9.9e-05', 0.0426)

**Item order.** The candidate's items are the reference baseline's (the reference always runs
every item), sorted by ``sha256("<seed>:<item id>")`` with the suite's generation seed
(:func:`item_order`): a fixed pseudo-random order, the same for every precision, so each chunk is
a random sample of the task (not its first, often easier, items) and two runs of one precision
stop on nested prefixes of one list. Chunk k ends after ``ceil(k * N / K)`` items
(:func:`look_sizes`).

**Boundaries.** The gate's two questions are two one-sided tests: PASS rejects "the candidate
is worse by ``margin`` or more" at the task's ``alpha``; FAIL rejects "it is no worse" and needs
``diff < -margin`` too, so the fixed design FAILs a candidate with no drop with probability
``alpha_F = Phi(-max(z(1 - alpha), kappa))``, ``kappa`` the margin in standard errors at all N
items (:func:`fail_level`: at most ``alpha``, much less where the margin binds). Each side spends
its level over the looks with the Lan-DeMets O'Brien-Fleming function ``a(t) = 2 - 2 *
Phi(z(1 - a / 2) / sqrt(t))`` at the information fraction ``t = n_k / N``
(:func:`obf_spending`): PASS spends ``alpha``, FAIL spends ``alpha_F`` (estimated at each look
from the variance of the paired differences so far; ``alpha`` under ``fail: strict``). The z
boundaries ``c_k`` solve ``P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = a(t_k) -
a(t_{k-1})`` for the standardised score process (``corr(Z_i, Z_j) = sqrt(t_i / t_j)``), by
numerical integration of its independent increments on a grid (:func:`boundaries`, cached per
design and level; checked against scipy's multivariate normal and published values in
tests/core/test_sequential.py). At look k the gate is :func:`quantgate.gate.compare` at the
*nominal* alphas ``1 - Phi(c_k)``: "pass" at the PASS side's, "fail" at the FAIL side's
(:func:`settle`, :func:`look_verdict`). Stopping for one side only removes chances of the other
side's error (each boundary is non-binding for the other), so false PASS stays at the fixed
design's ``alpha`` under a drop of ``margin`` and false FAIL at its ``alpha_F`` under no drop;
the price is a slightly stricter last look (PASS at nominal 0.043 instead of 0.05 at K = 4).
"inconclusive" never stops a run.

**The loop.** :func:`run_sequential` runs chunk after chunk (each call gets all items so far:
the runners' generation caches answer the earlier ones, nothing is generated twice) until a look
settles; :func:`run_candidate` is that loop against a stored reference baseline, and leaves the
look it stopped at in ``TaskRun.provenance["sequential"]`` (:func:`look_record`), which
:func:`quantgate.decision.decide_case` reads to gate the run at that look's nominal alpha and to
say, in the verdict, at which look and on how many items it stopped (:func:`describe`).

**Simulation.** :func:`simulate` draws seeded 0/1 paired runs (vectorised: multinomial counts per
chunk) and decides each look with the real :func:`~quantgate.gate.compare`, memoised on the
sufficient statistics (n, flips down, flips up): false PASS / FAIL rates of both designs on the same
draws, and the share of items the sequential design used (benchmarks/sequential_items.py).

**What it buys, and its limits** (benchmarks/sequential_items.py, 4000 runs per cell; the
table in docs/gating.md section 5b): a collapse (the tiny suite's int2, 65-81 pp down) is
decided at the first look, on 1/K of the items. A drop of 3x the margin is decided on 52-65 %
of the items at K = 3-4, a drop of 5x on 34-48 %: the issue's target (a broken checkpoint on
<= 40 % of the items) is met for a collapse, and for 5x the margin only in some scenarios (the
tiny arith task at K = 3, a task of 1566 items), never for 3x. O'Brien-Fleming boundaries are
strict early by design. No drop: 71-92 % of the items; a drop of the margin: 93-97 %. The
stricter last look costs a little power (P(PASS | no drop) 0.568 instead of 0.581 on the
400-item task at K = 3; 0.74 instead of 0.80 on a 100-item task at margin 6 pp).
With few discordant items (about 15 in the whole task)
the gate's interval is itself liberal at small nominal alphas, and false PASS at a drop of the
margin can then exceed the fixed design's by a few thousandths (n 150, discordance 0.05, K = 4:
0.055 vs 0.051 in 20,000 runs); at K = 3 there it does not. The code runners judge only the
new programs at each look (generations and LiveCodeBench's sandbox verdicts are cached).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np
from scipy import special

SPENDING = "Lan-DeMets O'Brien-Fleming alpha spending, both sides (PASS and FAIL)"
SETTLED = ("pass", "fail")
R = TypeVar("R")

# --- boundaries -------------------------------------------------------------------------------

_GRID = 401  # grid points per look for the numerical integration (odd: Simpson's rule; error
#               below 1e-7 in z against a 2401-point grid)
_LOW = -9.0  # the grid's lower end: P(Z < -9) ~ 1e-19


def obf_spending(t: float, alpha: float) -> float:
    """Alpha spent by information fraction ``t`` (Lan & DeMets 1983, O'Brien-Fleming type):
    ``2 - 2 * Phi(z(1 - alpha / 2) / sqrt(t))``; ``obf_spending(1, a) == a``.

    >>> round(obf_spending(0.5, 0.025), 6), round(obf_spending(1.0, 0.05), 12)
    (0.001525, 0.05)
    """
    if t <= 0:
        return 0.0
    return float(2.0 * special.ndtr(special.ndtri(alpha / 2.0) / math.sqrt(t)))


def boundaries(fractions: Sequence[float], alpha: float) -> tuple[float, ...]:
    """The one-sided z boundaries ``c_1..c_K`` at information ``fractions`` (increasing, the last
    1) spending ``alpha`` with :func:`obf_spending`; cached per design.

    >>> [round(c, 3) for c in boundaries((1 / 3, 2 / 3, 1.0), 0.025)]
    [3.71, 2.511, 1.993]
    """
    fractions = tuple(float(t) for t in fractions)
    if not fractions or any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise ValueError(f"information fractions must increase, got {fractions}")
    if not 0 < fractions[0]:
        raise ValueError(f"information fractions must lie in (0, 1], got {fractions}")
    if not math.isclose(fractions[-1], 1.0):
        raise ValueError(f"the last information fraction must be 1, got {fractions[-1]}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    return _boundaries(fractions, float(alpha))


@functools.lru_cache(maxsize=256)
def _boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    spent = [obf_spending(t, alpha) for t in fractions]
    spent[-1] = alpha
    targets = [spent[0]] + [b - a for a, b in zip(spent, spent[1:])]
    c = float(-special.ndtri(targets[0]))  # look 1: Z_1 ~ N(0, 1)
    out = [c]
    grid = _grid(c)
    dens = _phi(grid)  # sub-density of continuing with Z_{k-1} = z
    for k in range(1, len(fractions)):
        root_prev, root_now = math.sqrt(fractions[k - 1]), math.sqrt(fractions[k])
        scale = math.sqrt(fractions[k] - fractions[k - 1])
        weights = _simpson(grid) * dens
        z_scaled = grid * root_prev
        ck = _solve_boundary(weights, z_scaled, root_now, scale, targets[k])
        out.append(ck)
        if k + 1 < len(fractions):
            new_grid = _grid(ck)
            kernel = _phi((new_grid[:, None] * root_now - z_scaled[None, :]) / scale)
            dens = kernel @ weights * (root_now / scale)
            grid = new_grid
    return tuple(out)


def _solve_boundary(
    weights: np.ndarray, z_scaled: np.ndarray, root_now: float, scale: float, target: float
) -> float:
    """The c with P(continue so far, Z_k >= c) = target (in logs: targets reach 1e-18)."""
    from scipy import optimize

    if target <= 0:
        return math.inf
    log_target = math.log(target)

    def gap(ck: float) -> float:
        crossing = float(np.dot(weights, special.ndtr((z_scaled - ck * root_now) / scale)))
        return math.log(max(crossing, 1e-300)) - log_target

    return float(optimize.brentq(gap, -10.0, 40.0, xtol=1e-10, rtol=1e-12, maxiter=200))


def _grid(upper: float) -> np.ndarray:
    return np.linspace(_LOW, min(upper, 40.0), _GRID)


def _simpson(grid: np.ndarray) -> np.ndarray:
    h = grid[1] - grid[0]
    w = np.ones(len(grid))
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * h / 3.0


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


MIN_ALPHA = 1e-10  # a look's nominal alpha is never below this (see nominal_alphas)


def nominal_alphas(fractions: Sequence[float], alpha: float) -> tuple[float, ...]:
    """Per look, the one-sided level ``1 - Phi(c_k)`` the gate is applied at, at least
    :data:`MIN_ALPHA` (an early look of many can spend 1e-18: no interval is computed at such a
    level, and raising it to 1e-10 adds at most 1e-10 per look to an error rate)."""
    return tuple(max(float(special.ndtr(-c)), MIN_ALPHA) for c in boundaries(fractions, alpha))


def fail_level(
    alpha: float, margin: float, discordance: float, total: int, repeats: int = 1
) -> float:
    """The fixed design's FAIL rate under no drop, in the normal approximation: FAIL needs the
    upper bound below 0 (a test at ``alpha``) *and* ``diff < -margin``, so it is
    ``Phi(-max(z(1 - alpha), kappa))`` with ``kappa = (floor(margin * N * k) + 0.5) / k /
    sqrt(discordance * N)`` (the margin in standard errors at all N items, continuity-corrected
    on the lattice of sums of 1/k = 1/repeats), below ``alpha`` whenever the margin is the
    stricter condition. Rounded down to a grid of 50 steps per decade (few distinct levels to
    compute boundaries for; down: stricter).

    >>> fail_level(0.05, 0.0, 0.1, 1000), round(fail_level(0.05, 0.02, 0.1, 1000), 4)
    (0.05, 0.02)
    """
    if margin <= 0 or discordance <= 0:
        return alpha
    k = max(int(repeats), 1)
    kappa = (math.floor(margin * total * k + 1e-9) + 0.5) / k / math.sqrt(discordance * total)
    level = float(special.ndtr(-kappa))
    if level >= alpha:
        return alpha
    step = math.floor(math.log10(max(level, 1e-15)) * _LEVEL_STEPS) / _LEVEL_STEPS
    return min(alpha, 10.0**step)


_LEVEL_STEPS = 50


# --- item order and chunks ----------------------------------------------------------------------


def item_order(items: Iterable[str], seed: int | None) -> list[str]:
    """The items sorted by ``sha256("<seed>:<item>")`` (seed None counts as 0): a fixed
    pseudo-random order that depends on the items' ids and the suite's seed only.

    >>> item_order(["a", "b", "c", "d"], 1234) == item_order(["d", "c", "b", "a"], 1234)
    True
    """
    prefix = f"{0 if seed is None else seed}:"

    def key(item: str) -> tuple[str, str]:
        return hashlib.sha256((prefix + str(item)).encode()).hexdigest(), str(item)

    unique = {str(i) for i in items}
    return sorted(unique, key=key)


def look_sizes(total: int, looks: int) -> tuple[int, ...]:
    """Cumulative items at each look: ``ceil(k * total / looks)``, without repeats (fewer looks
    than asked when there are fewer items than looks).

    >>> look_sizes(150, 4), look_sizes(3, 4)
    ((38, 75, 113, 150), (1, 2, 3))
    """
    if total < 1 or looks < 1:
        raise ValueError(f"need at least one item and one look, got {total} items, {looks} looks")
    sizes = sorted({math.ceil(k * total / looks) for k in range(1, looks + 1)})
    return tuple(int(s) for s in sizes)


@dataclass(frozen=True)
class Design:
    """One task's sequential design: the cumulative sizes of its looks out of ``total`` items
    (``order``: the items in the order they run), the overall ``alpha`` and, per look, the PASS
    side's z boundary and nominal alpha; the FAIL side's depend on the data
    (:meth:`fail_alpha`)."""

    sizes: tuple[int, ...]
    total: int
    alpha: float
    order: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def plan(cls, items: Iterable[str], looks: int, alpha: float, seed: int | None) -> Design:
        order = tuple(item_order(items, seed))
        return cls(
            sizes=look_sizes(len(order), looks),
            total=len(order),
            alpha=alpha,
            order=order,
            seed=seed,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Design:
        """The design a :func:`look_record` was made under (without the item order)."""
        return cls(
            sizes=tuple(int(n) for n in record["sizes"]),
            total=int(record["total"]),
            alpha=float(record["alpha"]),
            seed=record.get("seed"),
        )

    @property
    def looks(self) -> int:
        return len(self.sizes)

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.total for n in self.sizes)

    @property
    def boundaries(self) -> tuple[float, ...]:
        return boundaries(self.fractions, self.alpha)

    @property
    def nominal_alphas(self) -> tuple[float, ...]:
        """The PASS side's nominal one-sided alpha per look (spending ``alpha``)."""
        return nominal_alphas(self.fractions, self.alpha)

    def fail_alpha(
        self,
        look: int,
        margin: float,
        discordance: float,
        fail_rule: str = "default",
        repeats: int = 1,
        alpha: float | None = None,
    ) -> float:
        """The FAIL side's nominal alpha at ``look`` (1-based), never above the PASS side's: it
        spends :func:`fail_level` (the fixed design's FAIL rate at this discordance, estimated
        from the items so far); under ``fail: strict`` (an alpha-level test of "the drop exceeds
        the margin") it spends ``alpha``, as PASS does. ``alpha``: another overall level than
        the design's (:func:`repeated_p`)."""
        alpha = self.alpha if alpha is None else alpha
        level = (
            alpha
            if fail_rule == "strict"
            else fail_level(alpha, margin, discordance, self.total, repeats)
        )
        # never above the PASS side's nominal alpha, without a min with it: fail_level is at most
        # ``alpha``, and a look's nominal alpha does not decrease with the level spent
        # (tests/core/test_sequential.py::test_the_fail_side_is_never_above_the_pass_side)
        return nominal_alphas(self.fractions, level)[look - 1]

    def chunk(self, look: int) -> list[str]:
        """The items run by look ``look`` (1-based), earlier looks' included."""
        return list(self.order[: self.sizes[look - 1]])


def settle(verdict_at: Callable[[float], Any], pass_alpha: float, fail_alpha: float):
    """One look's verdict from ``verdict_at(alpha)`` (a :func:`~quantgate.gate.compare` at that
    one-sided alpha): "pass" when the PASS side crosses (at ``pass_alpha``), "fail" when the FAIL
    side does (at ``fail_alpha``, never above ``pass_alpha``), else the FAIL side's
    "inconclusive" verdict. The two cannot both cross: a pass needs ``diff`` above
    ``-margin``, a fail below it."""
    at_pass = verdict_at(pass_alpha)
    if at_pass.outcome == "pass":
        return at_pass
    at_fail = at_pass if fail_alpha == pass_alpha else verdict_at(fail_alpha)
    return at_fail


def repeated_p(
    p: float | None, level_at: Callable[[float], float], alpha: float | None = None
) -> float | None:
    """A look's repeated p-value (Jennison & Turnbull 2000, ch. 9): the smallest overall
    one-sided level ``a`` at which the look's boundary is crossed, ``p <= level_at(a)``
    (``level_at``: the look's nominal alpha of the design spending ``a``, increasing in ``a``
    and never above it). Valid whatever the stopping rule: ``P(repeated p <= a at any look)``
    is the ``a``-level design's crossing probability, at most ``a`` under the null. So a
    sequential task's verdict at its own alpha and its repeated p-value agree (PASS iff the
    repeated ``p_noninferiority <= alpha``), and Holm across a suite (quantgate.family) can
    take them as it takes a fixed design's p-values. Found by bisection on a log scale to
    0.1 %, rounded up; 1 when no level below 0.999 crosses. ``alpha`` (the design's) is tried
    first, so the result is at most ``alpha`` exactly when that level's boundary is crossed.

    >>> design = Design(sizes=(50, 100, 150), total=150, alpha=0.05)
    >>> at_look_1 = lambda a: nominal_alphas(design.fractions, a)[0]
    >>> round(repeated_p(at_look_1(0.05), at_look_1), 3), round(repeated_p(0.005, at_look_1), 3)
    (0.05, 0.105)
    """
    if p is None:
        return None
    if math.isnan(p):  # no evidence either way: never the most significant in Holm's order
        return 1.0
    if p <= 0:
        return 0.0
    high = 0.999
    if level_at(high) < p:
        return 1.0
    if alpha is not None and p <= alpha < high and level_at(alpha) >= p:
        high = alpha
    low = max(p, MIN_ALPHA / 100)  # level_at(a) <= a: no level below p crosses (but the floor)
    if level_at(low) >= p:
        return low
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if level_at(mid) >= p:
            high = mid
        else:
            low = mid
    return high


def _effective_repeats(reference: dict, candidate: dict, repeats: int) -> int:
    """The gate's :func:`~quantgate.gate.effective_repeats` over the candidate's items (the
    declared ``repeats`` for scores that are not numbers: the gate then says why)."""
    from quantgate.gate import effective_repeats

    shared = [k for k in candidate if k in reference]
    try:
        return effective_repeats(
            repeats, [candidate[k] for k in shared], [reference[k] for k in shared]
        )
    except (TypeError, ValueError):
        return repeats


def discordance(reference: dict[str, float], candidate: dict[str, float], repeats: int) -> float:
    """The variance of the paired differences over the candidate's items, as the gate's
    interval has it (with its two pseudo-items, one discordant sample each way, and centred:
    the run's own drop does not inflate it, so a run far below the reference does not make its
    FAIL boundary laxer); never 0, and 1 when the scores are unusable (the gate then says
    why). ``repeats``: the samples per item the gate counts, i.e. :func:`_effective_repeats`
    (scores that are all 0 or 1 count one sample per item whatever the run declares)."""
    try:
        d = [float(candidate[k]) - float(reference[k]) for k in candidate if k in reference]
        return binary_discordance(0, 0, 0, repeats) if not d else _variance(d, repeats)
    except (TypeError, ValueError):
        return 1.0


def binary_discordance(n: int, down: int, up: int, repeats: int = 1) -> float:
    """:func:`discordance` of ``n`` 0/1 items, ``down`` of them right -> wrong and ``up`` wrong
    -> right."""
    return _variance([-1.0] * down + [1.0] * up + [0.0] * (n - down - up), repeats)


def _variance(d: Sequence[float], repeats: int) -> float:
    pseudo = 1.0 / max(int(repeats), 1)
    n_adj = len(d) + 2
    mean = math.fsum(d) / n_adj
    value = (math.fsum(x * x for x in d) + 2 * pseudo * pseudo) / n_adj - mean * mean
    return value if math.isfinite(value) and value > 0 else 1.0


# --- the loop -------------------------------------------------------------------------------------


@dataclass
class SequentialResult(Generic[R]):
    """What :func:`run_sequential` did: the last run (all items up to the stopping look) and each
    look's outcome."""

    design: Design
    run: R
    outcomes: list[str] = field(default_factory=list)
    fail_alphas: list[float] = field(default_factory=list)

    @property
    def look(self) -> int:
        return len(self.outcomes)

    @property
    def n(self) -> int:
        return self.design.sizes[self.look - 1]

    @property
    def stopped_early(self) -> bool:
        return self.look < self.design.looks

    def record(self) -> dict[str, Any]:
        return look_record(self.design, self.outcomes, self.fail_alphas)


def run_sequential(
    design: Design,
    run_items: Callable[[list[str]], R],
    decide: Callable[[R, int], tuple[str, float]],
) -> SequentialResult[R]:
    """Run ``design``'s looks in order: ``run_items(items so far)``, then ``decide(run, look)``
    -> (outcome, the FAIL side's nominal alpha). Stops at the first look whose outcome is not
    "inconclusive" ("pass", "fail", or e.g. "error" when the look cannot be gated: more items
    would not help); the last look ends it whatever its outcome."""
    result: SequentialResult[R] | None = None
    for look in range(1, design.looks + 1):
        run = run_items(design.chunk(look))
        outcome, fail_alpha = decide(run, look)
        if result is None:
            result = SequentialResult(design=design, run=run)
        result.run = run
        result.outcomes.append(outcome)
        result.fail_alphas.append(fail_alpha)
        if outcome != "inconclusive":
            break
    assert result is not None  # a design has at least one look
    return result


def look_record(
    design: Design, outcomes: Sequence[str], fail_alphas: Sequence[float]
) -> dict[str, Any]:
    """Plain JSON-safe data: where a sequential run stopped and under which boundaries (kept in
    ``TaskRun.provenance["sequential"]``)."""
    look = len(outcomes)
    return {
        "look": look,
        "looks": design.looks,
        "n": design.sizes[look - 1],
        "total": design.total,
        "sizes": list(design.sizes),
        "alpha": design.alpha,
        "pass_alpha": design.nominal_alphas[look - 1],
        "fail_alpha": fail_alphas[look - 1],
        "outcomes": list(outcomes),
        "stopped_early": look < design.looks,
        "seed": design.seed,
        "spending": SPENDING,
    }


def describe(record: dict[str, Any]) -> str:
    """One sentence for the verdict: at which look and on how many items the run stopped.

    >>> print(describe({"look": 1, "looks": 3, "n": 50, "total": 150, "alpha": 0.05,
    ...                 "pass_alpha": 6.9e-4, "fail_alpha": 6.9e-4, "stopped_early": True}))
    sequential: stopped at look 1 of 3 on 50 of 150 items (O'Brien-Fleming boundaries: nominal one-sided alpha 0.00069 (PASS) / 0.00069 (FAIL) at this look, 0.05 overall)
    """  # noqa: E501
    where = (
        f"stopped at look {record['look']} of {record['looks']} on {record['n']} of "
        f"{record['total']} items"
        if record.get("stopped_early")
        else f"ran all {record['looks']} looks, {record['n']} of {record['total']} items"
    )
    return (
        f"sequential: {where} (O'Brien-Fleming boundaries: nominal one-sided alpha "
        f"{record['pass_alpha']:.2g} (PASS) / {record['fail_alpha']:.2g} (FAIL) at this look, "
        f"{record['alpha']:g} overall)"
    )


# --- against a stored reference baseline -------------------------------------------------------


def settings_for(suite, task_name: str):
    """The task's :class:`~quantgate.config.Sequential` settings: its own ``sequential``, else the
    suite's default for paired tasks; None when neither is set."""
    task = suite.tasks[task_name]
    own = getattr(task, "sequential", None)
    if own is not None:
        return own
    default = getattr(suite, "sequential", None)
    return default if default is not None and task.gate.method == "paired" else None


def candidate_design(suite, task_name: str, precision: str, reference) -> Design | None:
    """The design of a candidate's sequential run over the ``reference`` baseline's items, or
    None (run every item): no ``sequential`` setting, ``looks: 1``, a gate other than paired, the
    reference precision itself, or no stored reference baseline to gate against."""
    settings = settings_for(suite, task_name)
    task = suite.tasks[task_name]
    if settings is None or settings.looks < 2 or task.gate.method != "paired":
        return None
    if precision == suite.reference or reference is None or not reference.items:
        return None
    design = Design.plan(reference.items, settings.looks, task.gate.alpha, suite.generation.seed)
    return design if design.looks > 1 else None


def look_verdict(reference, run, gate, design: Design, look: int, **where: Any):
    """The gate at one look: ``run`` (the design's first ``sizes[look - 1]`` items) against the
    same items of the ``reference`` baseline under ``gate`` (the task's GateConfig), at the
    look's nominal alphas (:func:`settle`); ``where``: gate_against's identity, where and
    refresh. Raises what gate_against raises.

    The verdict's ``p_noninferiority`` and ``p_drop`` are the look's repeated p-values
    (:func:`repeated_p`: against the PASS side's boundaries and the FAIL side's), valid at the
    design's overall alpha; the look's own p-values stay in ``Verdict.look_p``."""
    from quantgate.baselines import gate_against

    repeats = _effective_repeats(
        reference.items, run.scores, int(run.provenance.get("repeats") or 1)
    )
    rho = discordance(reference.items, run.scores, repeats)
    pass_alpha = design.nominal_alphas[look - 1]
    fail_rule = getattr(gate, "fail", "default")
    margin = gate.margin or 0.0
    fail_alpha = design.fail_alpha(look, margin, rho, fail_rule, repeats)

    def verdict_at(alpha: float):
        return gate_against(
            reference, run, gate.model_copy(update={"alpha": alpha}), subset_ok=True, **where
        )

    verdict = settle(verdict_at, pass_alpha, fail_alpha)
    return replace(
        verdict,
        p_noninferiority=repeated_p(
            verdict.p_noninferiority,
            lambda a: nominal_alphas(design.fractions, a)[look - 1],
            design.alpha,
        ),
        p_drop=repeated_p(
            verdict.p_drop,
            lambda a: design.fail_alpha(look, margin, rho, fail_rule, repeats, alpha=a),
            design.alpha,
        ),
        look_p=(verdict.p_noninferiority, verdict.p_drop),
    ), fail_alpha


def run_candidate(
    design: Design, reference, gate, run_items: Callable[[list[str]], Any], **where: Any
):
    """:func:`run_sequential` of a candidate against its stored ``reference`` baseline under
    ``gate``: the last run, with :func:`look_record` in its provenance under ``"sequential"``.
    A look that cannot be gated (other items than the reference's...) stops the loop; the
    decision reports why."""
    from quantgate.baselines import BaselineError
    from quantgate.gate import GateError

    def decide(run, look: int) -> tuple[str, float]:
        try:
            verdict, fail_alpha = look_verdict(reference, run, gate, design, look, **where)
        except (GateError, BaselineError):
            return "error", design.nominal_alphas[look - 1]
        return verdict.outcome, fail_alpha

    result = run_sequential(design, run_items, decide)
    run = result.run
    run.provenance = {**run.provenance, "sequential": result.record()}
    return run


# --- simulation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """Seeded runs of one scenario: each run's fixed-design and sequential outcomes and the items
    the sequential design used."""

    fixed: np.ndarray  # outcome per run: "pass" | "fail" | "inconclusive"
    sequential: np.ndarray
    items_used: np.ndarray  # items generated per run by the sequential design
    total: int

    def rate(self, design: str, outcome: str) -> float:
        return float(np.mean(getattr(self, design) == outcome))

    @property
    def share_used(self) -> float:
        return float(np.mean(self.items_used) / self.total)


def simulate(
    *,
    n: int,
    margin: float,
    looks: int,
    drop: float = 0.0,
    discordance: float = 0.1,
    alpha: float = 0.05,
    runs: int = 10_000,
    seed: int = 0,
) -> Simulation:
    """``runs`` seeded paired 0/1 runs of ``n`` items: each item flips up with probability
    ``discordance / 2`` and down with ``discordance / 2 + drop`` (true difference ``-drop``).
    Chunks are drawn as multinomial counts (items are exchangeable once in seeded order); each
    look is decided by :func:`settle` over the real :func:`~quantgate.gate.compare`, memoised on
    (n, flips down, flips up, alpha); the fixed design is compare at ``alpha`` on all ``n``."""
    p_up = discordance / 2.0
    p_down = discordance / 2.0 + drop
    if not (0 <= p_up and 0 <= p_down and p_up + p_down <= 1):
        raise ValueError(f"no such scenario: discordance {discordance}, drop {drop}")
    design = Design(sizes=look_sizes(n, looks), total=n, alpha=alpha)
    rng = np.random.default_rng(seed)
    chunks = np.diff((0, *design.sizes))
    counts = np.zeros((runs, 2), dtype=np.int64)  # cumulative (down, up)
    seq = np.full(runs, "inconclusive", dtype=object)
    used = np.full(runs, n, dtype=np.int64)
    open_ = np.ones(runs, dtype=bool)
    for look, (size, chunk) in enumerate(zip(design.sizes, chunks), start=1):
        draws = rng.multinomial(int(chunk), [p_down, p_up, 1 - p_down - p_up], size=runs)
        counts += draws[:, :2]
        if open_.any():
            decided = _look_outcomes(design, look, counts[open_], margin)
            index = np.flatnonzero(open_)
            settled = decided != "inconclusive"
            seq[index] = decided
            used[index[settled]] = size
            open_[index[settled]] = False
    fixed = _unique_apply(counts, lambda b, c: _binary_outcome(n, b, c, alpha, margin))
    return Simulation(fixed=fixed, sequential=seq, items_used=used, total=n)


def _look_outcomes(design: Design, look: int, counts: np.ndarray, margin: float) -> np.ndarray:
    n = design.sizes[look - 1]
    pass_alpha = design.nominal_alphas[look - 1]

    def outcome(down: int, up: int) -> str:
        rho = _binary_variance(n, down, up)
        fail_alpha = design.fail_alpha(look, margin, rho)
        return settle(
            lambda a: _Outcome(_binary_outcome(n, down, up, a, margin)), pass_alpha, fail_alpha
        ).outcome

    return _unique_apply(counts, outcome)


def _binary_variance(n: int, down: int, up: int) -> float:
    """:func:`binary_discordance` in closed form (the simulation's loop)."""
    mean = (up - down) / (n + 2.0)
    value = (down + up + 2.0) / (n + 2.0) - mean * mean
    return value if value > 0 else 1.0


@dataclass(frozen=True)
class _Outcome:
    outcome: str


def _unique_apply(counts: np.ndarray, fn: Callable[[int, int], str]) -> np.ndarray:
    """``fn(down, up)`` per row of ``counts``, each distinct row computed once."""
    pairs, inverse = np.unique(counts, axis=0, return_inverse=True)
    decided = np.array([fn(int(b), int(c)) for b, c in pairs], dtype=object)
    return decided[inverse.reshape(-1)]


@functools.lru_cache(maxsize=500_000)
def _binary_outcome(n: int, down: int, up: int, alpha: float, margin: float) -> str:
    """The real gate on n 0/1 items: ``down`` right -> wrong, ``up`` wrong -> right, the rest
    concordant."""
    from quantgate.gate import compare

    same = n - down - up
    reference = [1.0] * down + [0.0] * up + [1.0] * same
    candidate = [0.0] * down + [1.0] * up + [1.0] * same
    return compare(
        dict(enumerate(reference)), dict(enumerate(candidate)), margin=margin, alpha=alpha
    ).outcome
