"""Reasoning hygiene (issue 12, item 8): per-item truncated / empty / no-answer rates, recorded
with every baseline, and a candidate whose rates rise significantly beyond the suite's tolerance
fails its case even when its accuracy passes."""

from __future__ import annotations

import json

from quantgate.baselines import Baseline, baseline_path, identity
from quantgate.cases import Case
from quantgate.config import Suite
from quantgate.decision import decide_case
from quantgate.hygiene import compare_hygiene, item_rates
from quantgate.report import HYGIENE_ROW, VERDICT_ROW, summary_sections
from quantgate.runs import TaskRun, finish_run

N = 200
ITEMS = [str(i) for i in range(N)]
SCORES = {i: float(int(i) % 2) for i in ITEMS}


def suite(**extra) -> Suite:
    return Suite(
        name="s",
        model="m",
        precisions={"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
        tasks={"t": {"runner": "lmeval", "lmeval_task": "x", "metric": "acc,none"}},
        **extra,
    )


def run(precision: str, truncated: int = 0) -> TaskRun:
    """A run with SCORES whose first ``truncated`` even (already wrong) items were cut off."""
    flagged = [i for i in ITEMS if int(i) % 2 == 0][:truncated]
    return TaskRun("t", precision, dict(SCORES), hygiene={"truncated": dict.fromkeys(flagged, 1.0)})


def store_reference(root, s: Suite) -> None:
    path = baseline_path(root, "s", "t", "bf16")
    path.parent.mkdir(parents=True)
    path.write_text(Baseline.from_run(run("bf16"), identity(s, "t", "bf16")).to_json())


def test_item_rates_count_each_flag_per_item_over_its_repeats(tmp_path):
    samples = [
        {"item": "a", "truncated": True, "empty": True, "no_answer": True},
        {"item": "a", "truncated": False, "empty": False, "no_answer": True},
        {"item": "b", "truncated": False, "empty": False, "no_answer": False},
    ]
    assert item_rates(samples) == {
        "truncated": {"a": 0.5},
        "empty": {"a": 0.5},
        "no_answer": {"a": 1.0},
    }
    made = finish_run(
        "t", "bf16", {"a": [0, 0], "b": [1]}, samples, out_dir=tmp_path, provenance={}
    )
    assert made.hygiene == item_rates(samples)


def test_a_significant_rise_beyond_the_tolerance_fails_and_a_small_one_does_not():
    clean = {"truncated": {}}
    many = {"truncated": dict.fromkeys(ITEMS[:30], 1.0)}  # 15 % of the items
    few = {"truncated": dict.fromkeys(ITEMS[:2], 1.0)}  # 1 %
    (bad,) = [f for f in compare_hygiene(clean, many, ITEMS, tolerance=0.02) if f.failed]
    assert bad.indicator == "truncated" and (bad.reference, bad.candidate) == (0.0, 0.15)
    assert not any(f.failed for f in compare_hygiene(clean, few, ITEMS, tolerance=0.02))
    assert not any(f.failed for f in compare_hygiene(many, many, ITEMS, tolerance=0.02))


def test_a_candidate_that_truncates_fails_although_its_accuracy_passes(tmp_path):
    s = suite()
    store_reference(tmp_path, s)
    decision = decide_case(
        Case("s", "t", "fp8"), run("fp8", truncated=30), s, baselines_root=tmp_path
    )
    verdicts = [r["verdict"] for k, r in decision.rows if k == VERDICT_ROW]
    assert verdicts == ["pass"]  # the scores are the reference's
    assert decision.outcome == "problems"
    (message,) = decision.problems
    assert message.startswith("s-t-fp8: truncated rose from 0.0% to 15.0% of the items")
    assert "beyond the 2 pp tolerance" in message
    (row,) = [r for k, r in decision.rows if k == HYGIENE_ROW]
    assert row["truncated"] == [0.0, 0.15] and row["verdict"] == "fail"
    json.dumps(decision.rows)
    (title, table), *_ = [x for x in summary_sections({HYGIENE_ROW: [row]})]
    assert title == "quantgate reasoning hygiene" and "0.0% -> 15.0%" in table


def test_the_tolerance_is_the_suites(tmp_path):
    lenient = suite(hygiene_tolerance=0.2)
    store_reference(tmp_path, lenient)
    decision = decide_case(
        Case("s", "t", "fp8"), run("fp8", truncated=30), lenient, baselines_root=tmp_path
    )
    assert decision.outcome == "ok", decision.problems


def test_hygiene_travels_with_the_baseline_and_older_files_have_none(tmp_path):
    stored = Baseline.from_run(run("bf16", truncated=3), {"checkpoint": "org/m"})
    again = Baseline.from_json(stored.to_json())
    assert again.hygiene == {"truncated": {"0": 1.0, "2": 1.0, "4": 1.0}}
    legacy = json.loads(stored.to_json())
    del legacy["hygiene"]
    assert Baseline.from_json(json.dumps(legacy)).hygiene is None


def test_a_reference_without_a_hygiene_record_is_not_paired(tmp_path):
    s = suite()
    path = baseline_path(tmp_path, "s", "t", "bf16")
    path.parent.mkdir(parents=True)
    legacy = json.loads(Baseline.from_run(run("bf16"), identity(s, "t", "bf16")).to_json())
    del legacy["hygiene"]
    path.write_text(json.dumps(legacy))
    decision = decide_case(
        Case("s", "t", "fp8"), run("fp8", truncated=30), s, baselines_root=tmp_path
    )
    assert decision.outcome == "ok" and not [r for k, r in decision.rows if k == HYGIENE_ROW]
