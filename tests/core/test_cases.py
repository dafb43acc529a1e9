"""quantgate.cases: the plan of a session as plain data (no pytest, no server)."""

from __future__ import annotations

import pytest

from quantgate.cases import (
    THROUGHPUT,
    Case,
    SelectionError,
    case_groups,
    option_problems,
    plan_cases,
    plan_throughput_cases,
    reference_first,
    refresh_command,
    requirement_met,
    select_suites,
    unmet_requirements,
)
from quantgate.config import Suite


def make_suite(name="s", **extra) -> Suite:
    data = {
        "model": "m",
        "reference": "bf16",
        "precisions": {
            "fp8": {"checkpoint": "c-fp8"},
            "bf16": {"checkpoint": "c"},
            "int2": {"checkpoint": "c-int2", "expect": "fail"},
            "gpu8": {"checkpoint": "c", "requires": ["gpu", "env:QG_UNSET_X"]},
        },
        "tasks": {
            "a": {"runner": "lmeval", "lmeval_task": "x", "metric": "acc,none"},
            "b": {
                "runner": "lmeval",
                "lmeval_task": "y",
                "metric": "acc,none",
                "requires": ["module:no_such_module_qg"],
            },
            "c": {
                "runner": "lmeval",
                "lmeval_task": "z",
                "metric": "acc,none",
                "skip": "placeholder",
            },
        },
    }
    data.update(extra)
    return Suite(name=name, **data)


def test_reference_first_then_the_suite_order():
    suite = make_suite()
    assert reference_first(suite) == ["bf16", "fp8", "int2", "gpu8"]
    assert reference_first(suite, ["int2", "bf16"]) == ["bf16", "int2"]


def test_plan_groups_by_precision_reference_first():
    plan = plan_cases({"s": make_suite()})
    assert [p.case.id for p in plan][:4] == ["s-a-bf16", "s-b-bf16", "s-c-bf16", "s-a-fp8"]
    groups = [p.case.group for p in plan]
    assert groups == sorted(groups, key=groups.index)  # each group contiguous


def test_plan_carries_skip_reasons_and_the_planted_failure(monkeypatch):
    monkeypatch.delenv("QG_UNSET_X", raising=False)
    plan = {p.case.id: p for p in plan_cases({"s": make_suite()})}
    assert plan["s-a-bf16"].skip is None and not plan["s-a-bf16"].expect_fail
    assert plan["s-b-bf16"].skip == "b requires module:no_such_module_qg"
    assert plan["s-c-bf16"].skip == "placeholder"
    assert plan["s-a-int2"].expect_fail
    reason = plan["s-b-gpu8"].skip
    assert reason.startswith("gpu8 requires ") and "env:QG_UNSET_X" in reason
    assert "; b requires module:no_such_module_qg" in reason  # precision first, then task


def test_requirements(monkeypatch):
    monkeypatch.setenv("QG_SET_X", "1")
    assert requirement_met("env:QG_SET_X") and not requirement_met("env:QG_UNSET_Y")
    assert requirement_met("module:json") and not requirement_met("module:no_such_module_qg")
    with pytest.raises(ValueError, match="unknown requirement"):
        requirement_met("disk:100G")
    suite = make_suite()
    assert unmet_requirements(suite, Case("s", "a", "bf16"), suite.tasks["a"]) is None


def test_selection_errors_name_what_is_available():
    suites = {"s": make_suite(), "t": make_suite("t")}
    assert list(select_suites(suites, [], "dir")) == ["s", "t"]
    assert list(select_suites(suites, ["t"], "dir")) == ["t"]
    with pytest.raises(
        SelectionError, match=r"--suite nope: no such suite in dir; available: s, t"
    ):
        select_suites(suites, ["nope"], "dir")
    with pytest.raises(SelectionError, match=r"--precision fp4: .*available: bf16, fp8, gpu8"):
        plan_cases(suites, ["fp4"])


def test_option_problems():
    ok = {"limit": None, "update": False, "server_url": None, "precisions": []}
    assert option_problems(**ok) == []
    assert "partial baseline" in option_problems(**{**ok, "limit": 5, "update": True})[0]
    assert "exactly one --precision" in option_problems(**{**ok, "server_url": "http://x"})[0]
    assert option_problems(**{**ok, "server_url": "http://x", "precisions": ["fp8"]}) == []
    assert "add --snapshot-update" in option_problems(**{**ok, "accept_drift": True})[0]
    assert option_problems(**{**ok, "accept_drift": True, "update": True}) == []


def test_throughput_cases_only_for_suites_with_a_section():
    plain, fast = make_suite(), make_suite("f", throughput={"requests": 4})
    plan = plan_throughput_cases({"s": plain, "f": fast}, ["fp8", "bf16"])
    assert [p.case.id for p in plan] == ["f-throughput-bf16", "f-throughput-fp8"]
    assert all(p.case.task == THROUGHPUT for p in plan)


def test_case_groups_cover_accuracy_and_throughput_ids():
    groups = case_groups({"s": make_suite()}, ["fp8"])
    assert groups["s-a-fp8"] == "s-fp8" and "s-a-bf16" not in groups
    assert groups["s-throughput-bf16"] == "s-bf16"


def test_refresh_command_quotes():
    assert refresh_command("qwen3-32b", "bf16") == (
        "pytest -m accuracy --suite qwen3-32b --precision bf16 --snapshot-update"
    )
    assert "--precision 'a b'" in refresh_command("s", "a b")


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_must_be_positive(limit):
    """--limit 0 meant different things per runner and slipped past the partial-baseline
    guard with --snapshot-update."""
    problems = option_problems(limit=limit, update=False, server_url=None, precisions=[])
    assert problems == [f"--limit {limit}: expected a positive number of items (e.g. --limit 20)"]
    with_update = option_problems(limit=limit, update=True, server_url=None, precisions=[])
    assert any("partial baseline" in p for p in with_update)


def test_one_suite_verdict_case_per_candidate_precision():
    from quantgate.cases import plan_suite_cases

    plan = plan_suite_cases({"s": make_suite()}, ["bf16", "int2", "gpu8"])
    assert [p.case.id for p in plan] == ["s-all-int2", "s-all-gpu8"]  # never the reference
    assert plan[0].expect_fail and plan[0].skip is None
    assert "gpu8 requires" in plan[1].skip
    assert case_groups({"s": make_suite()})["s-all-fp8"] == "s-fp8"
    one_task = make_suite(tasks={"a": {"runner": "lmeval", "lmeval_task": "x", "metric": "m,n"}})
    assert plan_suite_cases({"s": one_task}) == []


def test_the_suite_verdict_decision():
    from quantgate.decision import decide_suite
    from quantgate.gate import compare

    ref = {str(i): float(i % 2) for i in range(400)}
    worse = {k: 0.0 for k in ref}
    case = Case("s", "all", "fp8")
    assert "needs two or more tasks" in decide_suite(case, make_suite(), {}).skip
    same = compare(ref, ref, margin=0.05)
    ok = decide_suite(case, make_suite(), {"a": same, "b": same})
    assert ok.outcome == "pass" and ok.rows[0][1]["tasks"] == ["a", "b"]
    bad = decide_suite(case, make_suite(), {"a": same, "b": compare(ref, worse, margin=0.05)})
    assert bad.outcome == "fail" and bad.rows[0][1]["failed"] == ["b"]
    assert bad.message.startswith("s-all-fp8: ")
