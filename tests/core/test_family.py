"""One verdict per precision across a suite's tasks, Holm-adjusted (issue 12 item 6)."""

import functools
import math
from dataclasses import replace

import numpy as np
import pytest

from quantgate.family import SuiteVerdict, holm, suite_verdict
from quantgate.gate import GateError, compare

FAMILY_ALPHA = 0.05


@functools.lru_cache
def _keys(n: int) -> tuple[str, ...]:
    return tuple(f"q{i:04d}" for i in range(n))


def _items(values) -> dict[str, float]:
    values = np.asarray(values, dtype=float).tolist()
    return dict(zip(_keys(len(values)), values))


def _paired(rng, n, p_down, p_up, p_ref=0.7):
    ref = (rng.random(n) < p_ref).astype(float)
    u = rng.random(n)
    cand = ref.copy()
    down, up = u < p_down, (u >= p_down) & (u < p_down + p_up)
    ref[down], cand[down] = 1.0, 0.0
    ref[up], cand[up] = 0.0, 1.0
    return _items(ref), _items(cand)


def test_holm_step_down_on_a_textbook_example():
    # sorted: 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2: stop; 0.04 is not rejected either
    assert holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert holm([0.01, 0.02], 0.05) == [True, True]  # 0.01 <= .025, then 0.02 <= .05
    assert holm([0.04, 0.03], 0.05) == [False, False]  # 0.03 > .025 stops at once
    assert holm([], 0.05) == []


def test_holm_adjusted_p_values_are_monotone_and_capped():
    from quantgate.family import holm_adjusted

    adjusted = holm_adjusted([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.6, 0.5]) == pytest.approx([1.0, 1.0])


REF = _items([1.0] * 800 + [0.0] * 200)


def _with_flips(down: int, up: int = 0) -> dict[str, float]:
    cand = dict(REF)
    for i in range(down):
        cand[f"q{i:04d}"] = 0.0
    for i in range(up):
        cand[f"q{800 + i:04d}"] = 1.0
    return cand


def test_suite_passes_when_every_task_is_non_inferior_after_adjustment():
    verdicts = {t: compare(REF, _with_flips(5, 5), margin=0.03) for t in ("a", "b", "c")}
    s = suite_verdict(verdicts, family_alpha=FAMILY_ALPHA)
    assert isinstance(s, SuiteVerdict)
    assert s.outcome == "pass" and s.failed == () and s.undecided == ()
    assert [t.task for t in s.tasks] == ["a", "b", "c"]
    assert all(t.noninferior and not t.dropped for t in s.tasks)
    assert s.message.startswith("pass: 3 tasks")


def test_suite_fails_naming_the_task_whose_drop_is_significant_and_beyond_margin():
    verdicts = {
        "math": compare(REF, _with_flips(5, 5), margin=0.03),
        "gpqa": compare(REF, _with_flips(90), margin=0.03),  # -9 pp
        "mmlu": compare(REF, _with_flips(5, 5), margin=0.03),
    }
    s = suite_verdict(verdicts, family_alpha=FAMILY_ALPHA)
    assert s.outcome == "fail" and s.failed == ("gpqa",)
    assert "gpqa" in s.message and "math" not in s.message.split(";")[0]
    gpqa = next(t for t in s.tasks if t.task == "gpqa")
    assert gpqa.dropped and gpqa.p_drop_adjusted <= FAMILY_ALPHA


def test_tasks_that_pass_alone_can_be_inconclusive_in_the_family():
    # p_noninferiority 0.034: passes alone; x 2 or x 3 (Holm's first steps) it is above 0.05
    borderline = next(
        v
        for down in range(60)
        if (v := compare(REF, _with_flips(down, 8), margin=0.03)).outcome == "pass"
        and 0.03 < v.p_noninferiority <= 0.05
    )
    clear = compare(REF, REF, margin=0.03)
    s = suite_verdict({"a": borderline, "b": borderline, "c": borderline})
    assert s.outcome == "inconclusive" and s.undecided == ("a", "b", "c")
    assert "more items" in s.message
    # with two clear tasks the borderline one is compared with alpha itself (Holm's last step)
    assert suite_verdict({"a": clear, "b": borderline, "c": clear}).outcome == "pass"
    # and with one other borderline task it is not
    s = suite_verdict({"a": clear, "b": borderline, "c": borderline})
    assert s.outcome == "inconclusive" and s.undecided == ("b", "c")


def test_a_significant_drop_within_the_margin_is_not_a_suite_fail():
    big_ref = _items([1.0] * 9000 + [0.0] * 1000)
    cand = dict(big_ref, **{f"q{i:04d}": 0.0 for i in range(100)})  # -1 pp, margin 2 pp
    s = suite_verdict(
        {"a": compare(big_ref, cand, margin=0.02), "b": compare(REF, REF, margin=0.03)}
    )
    assert s.outcome == "pass"


def test_point_rules_have_no_p_value_and_are_refused():
    verdicts = {
        "a": compare(REF, REF, margin=0.03),
        "b": compare(REF, REF, method="recovery", threshold=0.95),
    }
    with pytest.raises(GateError, match=r"b: method 'recovery' has no p-value"):
        suite_verdict(verdicts)


def test_the_family_needs_at_least_one_task():
    with pytest.raises(GateError, match="no task verdicts"):
        suite_verdict({})


def test_strict_tasks_fail_on_their_strict_p_value():
    cand = _with_flips(40)  # -4 pp at margin 3 pp: significant below 0, not below -3 pp
    default = suite_verdict(
        {"a": compare(REF, cand, margin=0.03), "b": compare(REF, REF, margin=0.03)}
    )
    strict = suite_verdict(
        {"a": compare(REF, cand, margin=0.03, fail="strict"), "b": compare(REF, REF, margin=0.03)}
    )
    assert default.outcome == "fail" and strict.outcome == "inconclusive"


# --- by seeded simulation ------------------------------------------------------------------------

TASKS = {"t1": (300, 0.06), "t2": (500, 0.04), "t3": (200, 0.08), "t4": (800, 0.03)}


def test_all_tasks_truly_equal_fail_the_suite_at_most_family_alpha():
    """Margins 0, so FAIL is the significance test alone: unadjusted, one of four tasks FAILs in
    ~15 % of the runs; Holm keeps the suite at family alpha."""
    rng = np.random.default_rng(20261211)
    runs = 1000
    suite_fails, any_task_fails = 0, 0
    for _ in range(runs):
        verdicts = {
            t: compare(*_paired(rng, n, 0.10, 0.10), margin=0.0) for t, (n, _) in TASKS.items()
        }
        suite_fails += suite_verdict(verdicts, family_alpha=FAMILY_ALPHA).outcome == "fail"
        any_task_fails += any(v.outcome == "fail" for v in verdicts.values())
    slack = 3 * math.sqrt(FAMILY_ALPHA * (1 - FAMILY_ALPHA) / runs)
    assert suite_fails / runs <= FAMILY_ALPHA + slack
    assert any_task_fails / runs > 2 * FAMILY_ALPHA  # what the family would be without Holm


def test_one_task_dropped_by_twice_its_margin_fails_the_suite_naming_it():
    rng = np.random.default_rng(20261212)
    runs = 500
    own, suite, named_others = 0, 0, 0
    for _ in range(runs):
        verdicts = {
            t: compare(*_paired(rng, n, 0.05, 0.05), margin=m) for t, (n, m) in TASKS.items()
        }
        verdicts["t2"] = compare(*_paired(rng, 500, 0.05 + 0.08, 0.05), margin=0.04)  # -8 pp
        own += verdicts["t2"].outcome == "fail"
        s = suite_verdict(verdicts, family_alpha=FAMILY_ALPHA)
        suite += s.outcome == "fail" and "t2" in s.failed
        named_others += any(t != "t2" for t in s.failed)
    assert own / runs >= 0.9
    assert suite / runs >= own / runs - 0.05  # close to the task's own power
    assert named_others / runs <= FAMILY_ALPHA


def test_the_module_docstring_example_is_true():
    import doctest

    import quantgate.family

    result = doctest.testmod(quantgate.family)
    assert result.attempted > 0 and result.failed == 0


# --- a sequential task in the family ---------------------------------------------------------


def _look(down: int, up: int, n: int = 150, looks: int = 3):
    """The last look of a K = 3 design over ``n`` 0/1 items (120 right in the reference): the
    verdict quantgate.decision gives a sequential run that stopped there."""
    from quantgate import sequential as seq
    from quantgate.baselines import Baseline
    from quantgate.config import GateConfig
    from quantgate.runs import TaskRun

    ref = {str(i): float(i < 120) for i in range(n)}
    cand = dict(
        ref, **{str(i): 0.0 for i in range(down)}, **{str(n - 1 - i): 1.0 for i in range(up)}
    )
    identity = {"suite": "s", "task": "t"}
    reference = Baseline.from_run(TaskRun(task="t", precision="bf16", scores=ref), identity)
    run = TaskRun(task="t", precision="int4", scores=cand)
    design = seq.Design.plan(list(ref), looks, FAMILY_ALPHA, seed=1)
    gate = GateConfig(method="paired", margin=0.05)
    verdict, _ = seq.look_verdict(
        reference, run, gate, design, looks, identity=identity, where="w", refresh="r"
    )
    return verdict, compare(ref, cand, margin=0.05)


def test_holm_takes_a_sequential_looks_repeated_p_values_not_its_nominal_ones():
    """Audit of issue 12 item 6/7: Holm took the raw p-values of a sequential run's stopping
    look, so the suite PASSed with that task's own case inconclusive (its last look's nominal
    alpha is 0.045, the raw p 0.0452). The look's repeated p-values are valid at the design's
    overall alpha and agree with its own verdict."""
    verdict, fixed = _look(down=7, up=6)
    assert fixed.outcome == "pass"  # the same items would PASS a fixed design
    assert verdict.outcome == "inconclusive"  # the stricter last look does not
    raw_ni, raw_drop = verdict.look_p
    assert raw_ni == pytest.approx(fixed.p_noninferiority) and raw_ni < FAMILY_ALPHA
    assert verdict.p_noninferiority > FAMILY_ALPHA >= raw_ni
    ref = _items([1.0] * 2000)
    clear = compare(ref, dict(ref), margin=0.02)
    suite = suite_verdict({"seq": verdict, "clear": clear}, FAMILY_ALPHA)
    assert suite.outcome == "inconclusive" and suite.undecided == ("seq",)
    naive = suite_verdict(
        {"seq": replace(verdict, p_noninferiority=raw_ni, p_drop=raw_drop), "clear": clear}
    )
    assert naive.outcome == "pass"  # what it said before: PASS over an inconclusive task


def test_a_sequential_looks_fail_side_is_consistent_with_its_own_verdict():
    verdict, fixed = _look(down=16, up=7)  # exact sign test p 0.047 < 0.05
    assert fixed.outcome == "fail" and verdict.outcome == "inconclusive"
    assert verdict.look_p[1] <= FAMILY_ALPHA < verdict.p_drop
    assert suite_verdict({"seq": verdict}, FAMILY_ALPHA).outcome == "inconclusive"
    # and where the look settles, the repeated p-values say so at the overall alpha
    passed, _ = _look(down=0, up=0)
    failed, _ = _look(down=60, up=0)
    assert passed.outcome == "pass" and passed.p_noninferiority <= FAMILY_ALPHA
    assert failed.outcome == "fail" and failed.p_drop <= FAMILY_ALPHA
    assert suite_verdict({"a": passed, "b": failed}).failed == ("b",)
