"""The per-case decision: what one case's run means for its baselines and its verdict, as data.

    >>> decision = decide_case(case, run, suite, baselines_root=Path("baselines"))  # doctest: +SKIP
    >>> decision.failed, decision.problems, decision.warning, decision.store       # doctest: +SKIP
    (None, [], None, True)

Four checks, in this order:

0. **What answered**: a ``--server-url`` deployment's served model id (recorded in the
   baseline's provenance as ``served_model``) must name the suite's checkpoint for the
   precision (the same id, or the same last path component, case-insensitively); otherwise a
   ``warning``, or a problem with ``strict_identity``.
1. **Own history** (not with ``update``): a precision's stored baseline must not be stale (its
   identity differs from the suite's) and the run must not drift from it beyond the gate's
   tolerance. The reference precision must have a baseline (the message gives the command
   that creates it); a candidate without one is fine, it is gated against the reference.
2. **Storing**: with ``update``, or when the own baseline exists and nothing is wrong, the new
   baseline goes to the snapshot assertion (``store``): syrupy writes it with
   ``--snapshot-update`` and otherwise checks it matches. With ``update``, the new baseline is
   first gated against the comparable one it replaces (a "replaced" row shows the drift); one
   that FAILs against it is not stored unless ``accept_drift`` (``--accept-drift``): a server
   serving another model must not silently become the reference.
3. **The gate** (candidates only): the run against the reference's stored per-item scores.
   "fail" sets ``failed`` (the case fails as the gate's verdict, what a planted broken precision
   must produce); "inconclusive" is a problem, or only a ``warning`` on a ``--limit`` smoke run,
   which cannot settle the gate.

Rows for the session summary come back in ``rows`` as ``(key, record)`` pairs of plain JSON-safe
data (:data:`VERDICT_ROW`, :data:`LIVEBENCH_ROW`), ready for ``user_properties``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quantgate.baselines import (
    Baseline,
    BaselineError,
    baseline_path,
    drift_verdict,
    gate_against,
    host_provenance,
    identity,
    load_baseline,
    stale_reasons,
)
from quantgate.cases import Case, refresh_command
from quantgate.config import Suite
from quantgate.gate import GateError
from quantgate.hygiene import compare_hygiene, hygiene_record
from quantgate.report import (
    HYGIENE_ROW,
    LIVEBENCH_ROW,
    SETUP_ROW,
    VERDICT_ROW,
    livebench_record,
    livebench_table,
    verdict_record,
    verdict_table,
)
from quantgate.runs import TaskRun
from quantgate.sequential import Design, describe, look_verdict


@dataclass
class CaseDecision:
    baseline: Baseline  # this run as a baseline of its own precision
    store: bool = False  # hand ``baseline`` to the snapshot assertion
    rows: list[tuple[str, dict]] = field(default_factory=list)  # (row key, record)
    failed: str | None = None  # the gate's verdict is "fail": the message with its table
    problems: list[str] = field(default_factory=list)  # the case fails with these
    warning: str | None = None  # the case passes with this warning
    verdict: Any = None  # the gate's Verdict against the reference (candidates that were gated)

    def warn(self, text: str) -> None:
        self.warning = f"{self.warning}\n{text}" if self.warning else text

    @property
    def outcome(self) -> str:
        """``failed`` | ``problems`` | ``warning`` | ``ok`` (what the plugin will do)."""
        if self.failed:
            return "failed"
        return "problems" if self.problems else "warning" if self.warning else "ok"


def decide_case(
    case: Case,
    run: TaskRun,
    suite: Suite,
    *,
    baselines_root: Path,
    update: bool = False,
    limit: int | None = None,
    accept_drift: bool = False,
    strict_identity: bool = False,
    cached: bool = False,
) -> CaseDecision:
    """Decide one case from its run and the baseline files under ``baselines_root``.

    ``cached``: every answer of the run came from the generation cache (no server was asked).
    The reference's own-history row then compares that cache with the baseline, not a new run
    with the old one, and says so; the verdicts are unchanged."""
    task = suite.tasks[case.task]
    mine = identity(suite, case.task, case.precision)
    new = Baseline.from_run(
        run, {**mine, **host_provenance()}, gate=task.gate.model_dump(mode="json")
    )
    decision = CaseDecision(baseline=new)
    look = sequential_look(run)
    partial = look is not None and look["n"] < look["total"]
    decision.rows.append((SETUP_ROW, setup_record(case, run, mine)))
    mismatch = served_model_mismatch(run, suite, case.precision)
    if mismatch:
        if strict_identity:
            decision.problems.append(f"{case.id}: {mismatch} (--strict-identity)")
        else:
            decision.warn(f"{case.id}: {mismatch}; --strict-identity makes this an error")
    own_path = baseline_path(baselines_root, case.suite, case.task, case.precision)
    is_reference = case.precision == suite.reference
    refresh = refresh_command(case.suite, case.precision)
    try:
        own, unreadable = load_baseline(own_path), False
    except BaselineError as exc:  # --snapshot-update rewrites it, as the message says
        own, unreadable = None, True
        if not update:
            decision.problems.append(f"{exc}:\n    {refresh}")

    if own is not None and not update:
        reasons = stale_reasons(own, mine)
        if reasons:
            decision.problems.append(
                f"the baseline at {own_path} is stale "
                f"({'; '.join(reasons)}); refresh it with:\n    {refresh}"
            )
        else:
            # a sequential run that stopped early: its items are a prefix of the task's
            drift = drift_verdict(*_common_items(own, new)) if partial else drift_verdict(own, new)
            if drift is not None and is_reference:
                record = verdict_record(case.id, "own history", drift)
                if cached:
                    record["cached"] = True
                decision.rows.append((VERDICT_ROW, record))
            if drift is None or drift.outcome == "fail":
                decision.problems.append(
                    f"{case.id} drifted from its own baseline {own_path}: "
                    + (drift.message if drift else _other_items(own.items, run.scores))
                    + f"; if the change is intended, refresh it with:\n    {refresh}"
                )
    elif own is None and is_reference and not update and not unreadable:
        decision.problems.append(f"no baseline at {own_path}; create it with:\n    {refresh}")
    # --snapshot-update: the new baseline against the comparable one it replaces (None: another
    # identity or other items, a deliberate change with nothing to gate)
    replaced = drift_verdict(own, new) if update and own is not None else None
    refused = replaced is not None and replaced.outcome == "fail" and not accept_drift
    if replaced is not None:
        decision.rows.append((VERDICT_ROW, verdict_record(case.id, "replaced", replaced)))
    if refused:
        decision.problems.append(
            f"{case.id}: not replacing {own_path}: the new run fails against it "
            f"({replaced.message}); was the right server answering? If the change is intended, "
            f"store it with:\n    {refresh} --accept-drift"
        )
    decision.store = (update and not refused) or (own is not None and not decision.problems)
    if partial and own is not None and not update:
        decision.baseline = own  # a partial run never replaces a baseline: syrupy sees it as it is

    if not is_reference:
        _gate(decision, case, run, suite, baselines_root, limit)
    elif replaced is None and (own is None or update):
        decision.rows.append(
            (VERDICT_ROW, verdict_record(case.id, "written" if update else "none", None, run=run))
        )
    if is_reference:
        _livebench(decision, case, run)
    return decision


def setup_record(case: Case, run: TaskRun, mine: dict[str, Any]) -> dict:
    """What ran, as plain data: the case, its checkpoint and build, the engine, the samples."""
    prov = run.provenance
    return {
        "case": case.id,
        "suite": case.suite,
        "task": case.task,
        "precision": case.precision,
        "checkpoint": mine["checkpoint"],
        "revision": mine["checkpoint_revision"],
        "quantization": mine["quantization"],
        "engine": prov.get("engine"),
        "engine_version": prov.get("engine_version"),
        "endpoint": prov.get("endpoint"),
        "served_model": prov.get("served_model"),
        "n": run.n,
        "mean": run.mean,
        "samples": str(run.samples_path) if run.samples_path else None,
    }


def served_model_mismatch(run: TaskRun, suite: Suite, precision: str) -> str | None:
    """For an external deployment: why its served model id does not name the suite's checkpoint
    for ``precision`` (None when it does, or when our own server answered)."""
    served = run.provenance.get("served_model")
    checkpoint = suite.precisions[precision].checkpoint
    if not served or _model_names_match(served, checkpoint):
        return None
    where = run.provenance.get("endpoint") or "the endpoint"
    return (
        f"{where} serves {served!r}, not the suite's {precision} checkpoint {checkpoint!r}; "
        "is this the deployment you mean to gate?"
    )


def _model_names_match(served: str, checkpoint: str) -> bool:
    """Same id, or same last path component (a local path or a served name without the org),
    case-insensitively; ``tiny://fp8`` matches ``.../tiny-fp8``."""

    def last(name: str) -> str:
        return name.strip().rstrip("/").replace("tiny://", "tiny-").rsplit("/", 1)[-1].lower()

    return served.strip().lower() == checkpoint.strip().lower() or last(served) == last(checkpoint)


def sequential_look(run: TaskRun) -> dict[str, Any] | None:
    """Where a sequential run stopped (:func:`quantgate.sequential.look_record`, left in its
    provenance by the loop), or None for a run of every item."""
    look = run.provenance.get("sequential")
    return look if isinstance(look, dict) and "look" in look else None


def _common_items(own: Baseline, new: Baseline) -> tuple[Baseline, Baseline]:
    """Both baselines on the items they share (a sequential run covers a prefix of the task)."""
    shared = [k for k in new.items if k in own.items]
    return (
        replace(own, items={k: own.items[k] for k in shared}),
        replace(new, items={k: new.items[k] for k in shared}),
    )


def _gate(
    decision: CaseDecision, case: Case, run: TaskRun, suite: Suite, root: Path, limit: int | None
) -> None:
    """The candidate against the reference's stored items; a sequential run at the nominal
    alphas of the look it stopped at, on the reference's same items (quantgate.sequential)."""
    reference = suite.reference
    ref_path = baseline_path(root, case.suite, case.task, reference)
    refresh = refresh_command(case.suite, reference)
    try:
        stored = load_baseline(ref_path)
    except BaselineError as exc:  # a file we cannot read: the exact command
        _livebench(decision, case, run, reference)  # its row all the same, without the reference's
        decision.problems.append(f"{exc}:\n    {refresh}")
        return
    livebench = _livebench(decision, case, run, reference, stored)
    look = sequential_look(run)
    where = {
        "identity": identity(suite, case.task, reference),
        "where": str(ref_path),
        "refresh": refresh,
    }
    try:  # gate_against (and look_verdict) raise BaselineError for a missing or stale reference
        if look is not None and stored is not None:
            verdict, _ = look_verdict(
                stored,
                run,
                suite.tasks[case.task].gate,
                Design.from_record(look),
                look["look"],
                **where,
            )
            verdict = replace(verdict, message=f"{verdict.message}; {describe(look)}")
        else:
            verdict = gate_against(
                stored, run, suite.tasks[case.task].gate, subset_ok=limit is not None, **where
            )
    except BaselineError as exc:  # its message ends with the command that fixes it
        decision.problems.append(str(exc))
        return
    except GateError as exc:  # e.g. other items than the reference's
        decision.problems.append(
            f"{case.id} cannot be gated against {ref_path}: {exc}; if the task changed, "
            f"refresh the reference with:\n    {refresh}"
        )
        return
    _hygiene(decision, case, run, suite, stored, reference)
    decision.verdict = verdict
    record = verdict_record(case.id, reference, verdict)
    if look is not None:  # the summary's n column shows "38/150 (look 1/4)"
        record.update(look=look["look"], looks=look["looks"], total=look["total"])
    decision.rows.append((VERDICT_ROW, record))
    if verdict.outcome == "pass":
        return
    text = f"{verdict.message}\n{verdict_table([(case.id, reference, verdict)])}"
    text += f"\n\n{livebench}" if livebench else ""
    if verdict.outcome == "fail":
        decision.failed = text
    elif limit is None:
        decision.problems.append(text)
    else:  # a --limit smoke run checks the chain, it cannot settle the gate
        decision.warn(f"{case.id} (--limit {limit}): {text}")


def _hygiene(
    decision: CaseDecision,
    case: Case,
    run: TaskRun,
    suite: Suite,
    stored: Baseline,
    reference: str,
) -> None:
    """Truncated, empty and unanswerable replies of the candidate against the reference's
    (quantgate.hygiene): a row for the summary; a significant rise beyond the suite's tolerance
    is a problem of its own, whatever the accuracy verdict."""
    if stored.hygiene is None:  # a baseline older than the hygiene record: nothing to pair
        return
    items = [i for i in stored.items if i in run.scores]
    findings = compare_hygiene(
        stored.hygiene,
        run.hygiene,
        items,
        tolerance=suite.hygiene_tolerance,
        alpha=suite.tasks[case.task].gate.alpha,
        repeats=int(run.provenance.get("repeats") or 1),
    )
    decision.rows.append((HYGIENE_ROW, hygiene_record(case.id, reference, findings)))
    for finding in findings:
        if finding.failed:
            decision.problems.append(f"{case.id}: {finding.message(suite.hygiene_tolerance)}")


def _livebench(
    decision: CaseDecision,
    case: Case,
    run: TaskRun,
    reference: str | None = None,
    stored: Baseline | None = None,
) -> str | None:
    """LiveBench cases: official and per-question numbers (and the reference's, from its
    ``stored`` baseline when there is one) for the summary; returns the table for a failure
    message."""
    stats = run.provenance.get("livebench")
    if not stats:
        return None
    ref_stats = stored.provenance.get("livebench") if stored is not None else None
    record = livebench_record(case.id, stats, reference, ref_stats)
    decision.rows.append((LIVEBENCH_ROW, record))
    return livebench_table([record])


def _other_items(stored: dict, scores: dict, shown: int = 5) -> str:
    """Which items a run has that its baseline has not, and the reverse."""
    parts = []
    for side, keys in (
        ("the baseline", [k for k in stored if k not in scores]),
        ("this run", [k for k in scores if k not in stored]),
    ):
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            parts.append(f"{len(keys)} only in {side}: {', '.join(keys[:shown])}{more}")
    return "other items than its baseline (" + "; ".join(parts) + ")" if parts else "other items"


@dataclass
class SuiteDecision:
    """A precision's ``<suite>-all-<precision>`` case, as data: skip it (``skip``), or its
    verdict across the tasks gated this session (``outcome``, ``message``, a summary row)."""

    skip: str | None = None
    outcome: str | None = None  # pass | fail | inconclusive
    message: str = ""
    rows: list[tuple[str, dict]] = field(default_factory=list)


def decide_suite(case: Case, suite: Suite, verdicts: dict[str, Any]) -> SuiteDecision:
    """Holm across the precision's task verdicts (:func:`quantgate.family.suite_verdict` at the
    suite's ``family_alpha``); skipped, saying why, when fewer than two tasks were gated."""
    from quantgate.family import suite_verdict
    from quantgate.report import SUITE_ROW, suite_record

    if len(verdicts) < 2:
        ran = ", ".join(sorted(verdicts)) or "none"
        return SuiteDecision(
            skip=f"{case.id}: a suite verdict needs two or more tasks gated against "
            f"{suite.reference} in this session (gated: {ran})"
        )
    try:
        verdict = suite_verdict(verdicts, family_alpha=suite.family_alpha)
    except GateError as exc:  # a point rule (abs_drop, recovery, rtol) has no p-value
        return SuiteDecision(skip=f"{case.id}: {exc}")
    row = suite_record(case.suite, case.precision, verdict)
    return SuiteDecision(
        outcome=verdict.outcome,
        message=f"{case.id}: {verdict.message}",
        rows=[(SUITE_ROW, row)],
    )


def throughput_skip(
    case: Case,
    *,
    from_cache: bool = False,
    cached_tasks: Sequence[str] = (),
    server_started: bool = False,
    external: bool = False,
) -> str | None:
    """Why a throughput case does not run, or None: it runs (starting its server if need be).

    ``cached_tasks``: the precision's task cases of this session whose answers all came from
    the generation cache; ``server_started``: whether any case of the precision started (or
    asked for) its server. When tasks ran and none needed a server, measuring speed would
    start one only for that: the case skips, saying how to measure it (throughput cases alone
    start their server). ``external``: a ``--server-url`` deployment, which nothing starts."""
    if from_cache:
        return "--from-cache: throughput needs a running server"
    if external or server_started or not cached_tasks:
        return None
    return (
        f"{case.id}: every accuracy case of {case.precision} in this session "
        f"({', '.join(cached_tasks)}) came from the generation cache, so no server was "
        "started to measure; to measure throughput, run the throughput cases alone (they start "
        f'the server): pytest -m "accuracy and benchmark" --suite {shlex.quote(case.suite)} '
        f"--precision {shlex.quote(case.precision)}"
    )


def from_cache_refusal(
    case: Case, suite: Suite, *, limit: int | None = None, whole_task: bool = True
) -> str:
    """``--from-cache``: why a case whose answers are not all cached fails (a RunError's text).

    lm-eval keeps finished runs whole (one per task, limit and item selection), so for an
    lm-eval task the message says how many items that run covers (the limit, else the rows of
    the task's one local data file); ``whole_task=False``: a sequential look's chunk, whose
    size the message does not claim. The other runners append how many answers are missing."""
    text = (
        f"--from-cache: {case.id} needs its server: answers are missing from the generation "
        "cache (it never ran here, or with another checkpoint build, engine version, task or "
        "generation settings); run without --from-cache to generate them"
    )
    task = suite.tasks[case.task]
    if task.runner != "lmeval":
        return text
    if not whole_task:
        return f"{text} (a look's chunk of its items has no finished lm-eval run in the cache)"
    n = _lmeval_items(suite, case.task, limit)
    if n is None:
        return f"{text} (none of its items has a finished lm-eval run in the cache)"
    return f"{text} ({n} of {n} items have no finished lm-eval run in the cache)"


def _lmeval_items(suite: Suite, task_name: str, limit: int | None) -> int | None:
    """How many items an lm-eval task's run covers, where that is known without lm-eval: the
    limit, capped by the rows of its one local JSON-lines data file (or the ``test`` split's)."""
    task = suite.tasks[task_name]
    limit = limit if limit is not None else task.limit
    files = task.data_files
    name = files.get("test") or (next(iter(files.values())) if len(files) == 1 else None)
    rows = None
    if name is not None and name.endswith(".jsonl"):
        try:
            with open(suite.resolve_path(name), encoding="utf-8") as f:
                rows = sum(1 for line in f if line.strip())
        except (OSError, ValueError):  # unreadable or not UTF-8: the count is unknown
            rows = None
    if rows is None:
        return limit
    return rows if limit is None else min(limit, rows)
