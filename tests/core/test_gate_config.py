"""Suite keys of the gate v2 (issue 12 items 2 and 6): ``gate: {fail: strict}`` and the
suite-level ``family_alpha``; existing suite files keep loading."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from quantgate.config import GateConfig, Suite
from quantgate.suites import load_suite

SUITES = sorted((Path(__file__).parents[1] / "accuracy" / "suites").glob("*.yaml"))


def _suite(**extra) -> Suite:
    return Suite(
        name="s",
        model="m",
        precisions={"bf16": {"checkpoint": "org/m"}},
        tasks={"t": {"runner": "lmeval", "lmeval_task": "x", "metric": "acc,none", **extra}},
    )


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_existing_suites_load_with_the_defaults(path):
    suite = load_suite(path)
    assert suite.family_alpha == 0.05
    assert all(task.gate.fail == "default" for task in suite.tasks.values())


def test_strict_fail_rule_and_family_alpha_are_accepted():
    suite = _suite(gate={"margin": 0.03, "fail": "strict"})
    assert suite.tasks["t"].gate.fail == "strict"
    assert (
        Suite(**{**_suite().model_dump(exclude={"path"}), "family_alpha": 0.1}).family_alpha == 0.1
    )


@pytest.mark.parametrize("bad", [{"fail": "lenient"}, {"fail": 1}])
def test_unknown_fail_rules_are_rejected(bad):
    with pytest.raises(ValidationError, match="fail"):
        GateConfig(**bad)


@pytest.mark.parametrize("bad", [0, 1, -0.1, "five"])
def test_family_alpha_must_be_a_probability(bad):
    with pytest.raises(ValidationError, match="family_alpha"):
        Suite(**{**_suite().model_dump(exclude={"path"}), "family_alpha": bad})


def test_rtol_one_sided_needs_a_threshold():
    assert GateConfig(method="rtol_one_sided", threshold=0.08).threshold == 0.08
    with pytest.raises(ValidationError, match="threshold"):
        GateConfig(method="rtol_one_sided")


def test_gate_against_passes_the_fail_rule(tmp_path):
    from quantgate.baselines import Baseline, gate_against
    from quantgate.runs import TaskRun

    ref = {f"q{i:04d}": float(i < 400) for i in range(500)}
    cand = dict(ref, **{f"q{i:04d}": 0.0 for i in range(20)})  # -4 pp at margin 3 pp
    stored = Baseline(items=ref, provenance={"checkpoint": "org/m"})
    run = TaskRun(task="t", precision="fp8", scores=cand, provenance={})

    def gate(rule):
        return gate_against(
            stored,
            run,
            GateConfig(margin=0.03, fail=rule),
            identity=stored.identity,
            where="x",
            refresh="y",
        )

    assert gate("default").outcome == "fail"
    assert gate("strict").outcome == "inconclusive"
