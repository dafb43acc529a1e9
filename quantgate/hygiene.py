"""Reasoning hygiene: truncated traces, empty replies and replies with no extractable answer,
per item, and whether a candidate has significantly more of them than its reference.

    >>> rates = item_rates(samples)          # {"truncated": {"7": 1.0, ...}, "empty": {...}, ...}
    >>> findings = compare_hygiene(reference_rates, run_rates, items, tolerance=0.02)

An item's rate is the share of its samples (repeats) flagged; only flagged items are stored, every
other item of the run counts 0. The flags each runner sets on its samples:

- ``truncated``: a ``<think>`` block still open at the end, or the server stopped the answer at
  the token limit: its ``finish_reason`` was ``length`` (quantgate's client records it for the
  code and LiveBench runners; for lm-eval tasks quantgate's chat-model subclass logs each
  answer's ``finish_reason`` and ``usage.completion_tokens`` beside lm-eval's request cache),
  or, where a server gives no ``finish_reason``, its completion tokens reached the request's
  ``max_tokens`` (the server's count: lm-eval's untokenized chat requests have no tokenizer of
  their own). Answers lm-eval cached before that log existed have only the think-block test;
- ``empty``: no answer text at all once reasoning is removed;
- ``no_answer``: nothing the task's extraction can grade (lm-eval's filter gave nothing or
  ``[invalid]``, no program in a code reply, no judged text in a LiveBench answer).

The comparison is the gate's own paired test on the "clean" indicator (1 − rate) of the same
items, with the tolerance as margin: an indicator FAILs when the rise is significant and larger
than the tolerance (default 2 pp, the suite's ``hygiene_tolerance``). Such a finding fails the
case even when its accuracy passes: a checkpoint that starts truncating or rambling is broken in
a way the score can hide (a truncated answer scores 0 on both sides only where it happens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INDICATORS = ("truncated", "empty", "no_answer")
Rates = dict[str, dict[str, float]]  # indicator -> item -> share of the item's samples flagged


def item_rates(samples: Iterable[Mapping[str, Any]]) -> Rates:
    """Per indicator, the flagged items' rates (samples carry ``item`` and the flags)."""
    seen: dict[str, int] = {}
    flagged: dict[str, dict[str, int]] = {name: {} for name in INDICATORS}
    for sample in samples:
        item = str(sample.get("item"))
        seen[item] = seen.get(item, 0) + 1
        for name in INDICATORS:
            if sample.get(name):
                flagged[name][item] = flagged[name].get(item, 0) + 1
    return {
        name: {item: count / seen[item] for item, count in sorted(items.items())}
        for name, items in flagged.items()
    }


def share(rates: Rates, indicator: str, items: Iterable[str]) -> float:
    """The indicator's mean rate over ``items``."""
    items = list(items)
    values = rates.get(indicator, {})
    return sum(values.get(i, 0.0) for i in items) / len(items) if items else 0.0


@dataclass(frozen=True)
class Finding:
    """One indicator of a candidate against its reference."""

    indicator: str
    reference: float  # share of the items flagged, reference
    candidate: float
    verdict: Any  # quantgate.gate.Verdict on the clean indicator (1 - rate)

    @property
    def failed(self) -> bool:
        return self.verdict.outcome == "fail"

    def message(self, tolerance: float) -> str:
        rise = (self.candidate - self.reference) * 100
        return (
            f"{self.indicator.replace('_', ' ')} rose from {self.reference:.1%} to "
            f"{self.candidate:.1%} of the items (+{rise:.1f} pp, beyond the "
            f"{tolerance * 100:g} pp tolerance and significant: {self.verdict.message})"
        )


def compare_hygiene(
    reference: Rates,
    candidate: Rates,
    items: Iterable[str],
    *,
    tolerance: float,
    alpha: float = 0.05,
    repeats: int = 1,
) -> list[Finding]:
    """Each indicator of ``candidate`` against ``reference`` over the same ``items``."""
    from quantgate.gate import compare

    items = sorted(items)
    findings = []
    for name in INDICATORS:
        ref_rates, cand_rates = reference.get(name, {}), candidate.get(name, {})
        verdict = compare(
            {i: 1.0 - ref_rates.get(i, 0.0) for i in items},
            {i: 1.0 - cand_rates.get(i, 0.0) for i in items},
            margin=tolerance,
            alpha=alpha,
            method="paired",
            repeats=repeats,
        )
        findings.append(
            Finding(name, share(reference, name, items), share(candidate, name, items), verdict)
        )
    return findings


def hygiene_record(case_id: str, against: str, findings: list[Finding]) -> dict:
    """A plain-data summary row: each indicator's reference and candidate share."""
    record: dict[str, Any] = {"case": case_id, "vs": against}
    for f in findings:
        record[f.indicator] = [f.reference, f.candidate]
    record["verdict"] = "fail" if any(f.failed for f in findings) else "ok"
    return record


def stopped_at_limit(finish_reason: Any, tokens: Any, limit: Any) -> bool | None:
    """Whether the server stopped an answer at the token limit: its ``finish_reason`` is
    ``length``; without one, whether the answer's token count (the server's own) reached the
    ``limit`` it was asked with. None when neither is known (a count or limit that is not a
    non-negative integer is not known)."""
    if finish_reason is not None:
        return finish_reason == "length"
    try:
        tokens, limit = int(tokens), int(limit)
    except (TypeError, ValueError):
        return None
    if tokens < 0 or limit < 1:
        return None
    return tokens >= limit
