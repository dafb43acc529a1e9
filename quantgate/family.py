"""One verdict per precision across a suite's tasks, with the family-wise error controlled.

Each task's gate (:func:`quantgate.gate.compare`) decides at its own alpha; a suite of eight
tasks gated at 0.05 each has a much larger chance of one false FAIL. :func:`suite_verdict`
combines the tasks' one-sided tests with Holm's (1979) step-down at the suite's
``family_alpha`` (``Suite.family_alpha``, default 0.05):

- **pass** when every task's non-inferiority (``p_noninferiority``, against its own margin)
  holds after adjustment;
- **fail** naming the tasks whose drop is significant after adjustment (``p_drop``, the FAIL
  rule's test: against 0, or against -margin under ``fail: strict``) *and* beyond their margin;
- **inconclusive** otherwise, naming the tasks that need more items.

    >>> from quantgate.gate import compare
    >>> ref = {f"q{i}": float(i % 4 != 0) for i in range(2000)}
    >>> same = compare(ref, dict(ref), margin=0.02)
    >>> worse = compare(ref, {k: 0.0 if i < 200 else v for i, (k, v) in enumerate(ref.items())},
    ...                 margin=0.02)
    >>> s = suite_verdict({"math": same, "gpqa": worse, "mmlu": same})
    >>> s.outcome, s.failed
    ('fail', ('gpqa',))

The family is controlled for each side separately: P(any task FAILed while none dropped) <=
family_alpha, and P(PASS while some task is worse than its margin) <= family_alpha.

A task run sequentially (quantgate.sequential) stops at a look whose nominal alphas are far
below its overall alpha; its verdict's ``p_noninferiority`` and ``p_drop`` are then the look's
*repeated* p-values (:func:`quantgate.sequential.repeated_p`: the smallest overall level at
which that look's boundary is crossed), valid for the sequential design whatever its stopping
rule, so Holm takes them as it takes a fixed design's: a task whose own sequential verdict is
inconclusive cannot be non-inferior (or dropped) in a family at or below its own alpha.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from quantgate.gate import GateError, Outcome, Verdict

__all__ = ["SuiteVerdict", "TaskDecision", "holm", "holm_adjusted", "suite_verdict"]


@dataclass(frozen=True)
class TaskDecision:
    """One task inside the family: its own verdict and the Holm-adjusted decisions."""

    task: str
    own_outcome: Outcome  # the task's verdict at its own alpha
    diff: float
    margin: float
    fail_rule: str
    p_noninferiority: float
    p_noninferiority_adjusted: float
    p_drop: float
    p_drop_adjusted: float
    noninferior: bool  # adjusted p_noninferiority <= family_alpha
    dropped: bool  # adjusted p_drop <= family_alpha and (strict, or diff < -margin)
    required_n: int | None  # the task's planning n when its own verdict is inconclusive


@dataclass(frozen=True)
class SuiteVerdict:
    """The suite's verdict for one precision (plain data: ``outcome``, ``tasks``, ``message``)."""

    outcome: Outcome
    family_alpha: float
    tasks: tuple[TaskDecision, ...]  # in the order given
    failed: tuple[str, ...]  # tasks whose drop is significant after adjustment, beyond margin
    undecided: tuple[str, ...]  # inconclusive: tasks not shown non-inferior (need more items)
    message: str

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the j-th smallest becomes
    ``max_{i <= j} min(1, (m - i + 1) p_(i))``; rejecting those <= alpha is the step-down."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if not m:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted.tolist()


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down rejects at family-wise ``alpha`` (in the order given)."""
    return [a <= alpha for a in holm_adjusted(p_values)]


def suite_verdict(verdicts: Mapping[str, Verdict], family_alpha: float = 0.05) -> SuiteVerdict:
    """Combine one precision's task verdicts (task name -> :class:`~quantgate.gate.Verdict` of
    ``compare`` against the reference) into one Holm-adjusted suite verdict.

    Every verdict needs its p-values: the paired and unpaired gates have them; the point rules
    (abs_drop, recovery, rtol, rtol_one_sided) have none, and a GateError names those tasks.
    """
    if not 0 < family_alpha < 1:
        raise GateError(f"family_alpha must lie strictly between 0 and 1, got {family_alpha!r}")
    if not verdicts:
        raise GateError("no task verdicts to combine")
    untested = [
        f"{task}: method {v.method!r} has no p-value"
        for task, v in verdicts.items()
        if v.p_noninferiority is None or v.p_drop is None
    ]
    if untested:
        raise GateError(
            "; ".join(untested) + " (the suite verdict combines the paired and unpaired gates;"
            " leave point-rule tasks out of it)"
        )
    names = list(verdicts)
    p_ni = holm_adjusted([verdicts[t].p_noninferiority for t in names])
    p_drop = holm_adjusted([verdicts[t].p_drop for t in names])
    decisions = []
    for task, adj_ni, adj_drop in zip(names, p_ni, p_drop):
        v = verdicts[task]
        beyond = v.fail_rule == "strict" or v.diff < -v.margin
        decisions.append(
            TaskDecision(
                task=task,
                own_outcome=v.outcome,
                diff=v.diff,
                margin=v.margin,
                fail_rule=v.fail_rule,
                p_noninferiority=v.p_noninferiority,
                p_noninferiority_adjusted=adj_ni,
                p_drop=v.p_drop,
                p_drop_adjusted=adj_drop,
                noninferior=adj_ni <= family_alpha,
                dropped=adj_drop <= family_alpha and beyond,
                required_n=v.required_n,
            )
        )
    failed = tuple(d.task for d in decisions if d.dropped)
    undecided = tuple(d.task for d in decisions if not d.noninferior and not d.dropped)
    if failed:
        outcome: Outcome = "fail"
    elif not undecided:
        outcome = "pass"
    else:
        outcome = "inconclusive"
    return SuiteVerdict(
        outcome=outcome,
        family_alpha=family_alpha,
        tasks=tuple(decisions),
        failed=failed,
        undecided=undecided,
        message=_message(outcome, decisions, failed, undecided, family_alpha),
    )


def _message(
    outcome: str,
    decisions: list[TaskDecision],
    failed: tuple[str, ...],
    undecided: tuple[str, ...],
    family_alpha: float,
) -> str:
    pp = 100.0
    by_name = {d.task: d for d in decisions}
    family = f"Holm over {len(decisions)} tasks at family alpha {family_alpha:g}"
    if outcome == "fail":
        named = ", ".join(
            f"{t} ({by_name[t].diff * pp:+.1f} pp, margin {by_name[t].margin * pp:.1f} pp, "
            f"adjusted p {by_name[t].p_drop_adjusted:.2g})"
            for t in failed
        )
        return f"fail: {named} dropped beyond the margin; {family}"
    if outcome == "pass":
        worst = max(d.p_noninferiority_adjusted for d in decisions)
        return (
            f"pass: {len(decisions)} tasks non-inferior within their margins "
            f"(largest adjusted p {worst:.2g}); {family}"
        )
    named = ", ".join(
        f"{t} (adjusted p {by_name[t].p_noninferiority_adjusted:.2g}"
        + (f", about {by_name[t].required_n} items" if by_name[t].required_n else "")
        + ")"
        for t in undecided
    )
    return f"inconclusive: {named} not shown non-inferior, more items needed; {family}"
