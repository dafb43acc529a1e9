"""quantgate.sequential (issue 12, item 7): the O'Brien-Fleming boundaries against published
values and scipy's multivariate normal, the seeded item order, the stopping loop, the decision of
a look, the config keys, and seeded simulations of the error rates and the items used."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantgate import sequential as seq
from quantgate.baselines import Baseline, baseline_path, identity
from quantgate.cases import Case
from quantgate.config import GateConfig, Suite
from quantgate.decision import decide_case
from quantgate.report import VERDICT_ROW, summary_table
from quantgate.runs import TaskRun
from quantgate.suites import SuiteError, load_suite

# --- boundaries ---------------------------------------------------------------------------

# gsDesign(k, test.type = 1, alpha = 0.025, sfu = sfLDOF), equally spaced looks
PUBLISHED = {
    2: (2.9626, 1.9686),
    3: (3.7103, 2.5114, 1.9930),
    4: (4.3326, 2.9631, 2.3590, 2.0141),
    5: (4.8769, 3.3569, 2.6803, 2.2898, 2.0310),
}


@pytest.mark.parametrize("looks", PUBLISHED)
def test_boundaries_are_lan_demets_obrien_fleming_as_published(looks):
    fractions = tuple(k / looks for k in range(1, looks + 1))
    assert seq.boundaries(fractions, 0.025) == pytest.approx(PUBLISHED[looks], abs=2e-4)


@pytest.mark.parametrize("fractions", [(0.3, 0.65, 1.0), (0.25, 0.5, 0.75, 1.0), (0.5, 1.0)])
def test_each_look_spends_what_the_spending_function_says(fractions):
    """scipy's multivariate normal of (Z_1..Z_K), corr sqrt(t_i / t_j): the chance of stopping
    by look k is the alpha spent by t_k, and alpha by the last look."""
    alpha = 0.05
    c = seq.boundaries(fractions, alpha)
    t = np.array(fractions)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    for k in range(1, len(t) + 1):
        if k == 1:
            never = stats.norm.cdf(c[0])
        else:
            mvn = stats.multivariate_normal(
                np.zeros(k), cov[:k, :k], seed=1, maxpts=200_000 * k, abseps=1e-7, releps=1e-7
            )
            never = float(mvn.cdf(np.array(c[:k])))
        assert 1 - never == pytest.approx(seq.obf_spending(t[k - 1], alpha), abs=2e-5)
    assert seq.obf_spending(1.0, alpha) == pytest.approx(alpha)


def test_a_monte_carlo_score_process_crosses_at_alpha():
    """A seeded Brownian motion observed at the looks (independent increments) crosses the
    boundaries with probability alpha, within Monte-Carlo error."""
    fractions, alpha, draws = (0.2, 0.45, 0.7, 1.0), 0.05, 400_000
    c = np.array(seq.boundaries(fractions, alpha))
    t = np.array(fractions)
    rng = np.random.default_rng(12)
    steps = rng.standard_normal((draws, len(t))) * np.sqrt(np.diff((0.0, *t)))
    z = np.cumsum(steps, axis=1) / np.sqrt(t)
    rate = float(np.mean((z >= c).any(axis=1)))
    assert abs(rate - alpha) < 3 * math.sqrt(alpha * (1 - alpha) / draws)


def test_the_last_look_is_a_little_stricter_than_the_fixed_design():
    design = seq.Design.plan([str(i) for i in range(150)], looks=4, alpha=0.05, seed=1234)
    assert design.sizes == (38, 75, 113, 150)
    first, *_, last = design.nominal_alphas
    assert first < 1e-4 and 0.04 < last < 0.05
    assert all(
        a >= seq.MIN_ALPHA for a in seq.nominal_alphas(tuple(k / 20 for k in range(1, 21)), 0.05)
    )


def test_the_fail_side_spends_the_fixed_designs_fail_rate():
    """FAIL needs diff < -margin too: where the margin binds, the fixed design FAILs an equal
    candidate far less often than alpha, and the FAIL side spends only that."""
    assert seq.fail_level(0.05, 0.0, 0.1, 1000) == 0.05  # margin 0: significance alone
    assert seq.fail_level(0.05, 0.02, 0.5, 1000) == 0.05  # noisy: significance binds
    level = seq.fail_level(0.05, 0.05, 0.05, 150)  # the tiny suite's arith: 2.7 SE of margin
    assert 0.0025 < level < stats.norm.sf(7.5 / math.sqrt(7.5)) + 1e-12
    design = seq.Design(sizes=(50, 100, 150), total=150, alpha=0.05)
    assert design.fail_alpha(1, 0.05, 0.05) < design.nominal_alphas[0]
    assert design.fail_alpha(1, 0.05, 0.05, fail_rule="strict") == design.nominal_alphas[0]


@pytest.mark.parametrize(("total", "looks"), [(150, 3), (100, 4), (1566, 5)])
def test_the_fail_side_is_never_above_the_pass_side(total, looks):
    """Design.fail_alpha takes no min with the PASS side's nominal alpha: fail_level is at most
    alpha, and a look's nominal alpha does not decrease with the level spent (here on every
    fifth step of fail_level's grid, 1e-8 to alpha)."""
    alpha = 0.05
    design = seq.Design(sizes=seq.look_sizes(total, looks), total=total, alpha=alpha)
    levels = [10.0 ** (j / 50) for j in range(-400, -65, 5)] + [alpha]
    for look in range(1, design.looks + 1):
        by_level = [seq.nominal_alphas(design.fractions, level)[look - 1] for level in levels]
        assert by_level == sorted(by_level) and by_level[-1] == design.nominal_alphas[look - 1]
    for margin in (0.0, 0.02, 0.05, 0.08, 0.2):
        for rho in (0.01, 0.05, 0.1, 0.5):
            for repeats in (1, 16):
                assert seq.fail_level(alpha, margin, rho, total, repeats) <= alpha
                for look, pass_alpha in enumerate(design.nominal_alphas, start=1):
                    assert design.fail_alpha(look, margin, rho, repeats=repeats) <= pass_alpha


# --- item order, chunks, the loop -------------------------------------------------------------


def test_the_item_order_is_seeded_the_same_for_every_precision_and_not_the_first_items():
    items = [str(i) for i in range(150)]
    order = seq.item_order(items, 1234)
    assert order == seq.item_order(list(reversed(items)), 1234)  # input order is irrelevant
    assert sorted(order) == sorted(items) and order != items
    assert seq.item_order(items, 99) != order  # the suite's seed picks the order
    assert seq.item_order(items, None) == seq.item_order(items, 0)
    first = {int(i) for i in order[:38]}
    assert not first <= set(range(76))  # a random sample, not the (often easier) first half


def test_look_sizes():
    assert seq.look_sizes(150, 3) == (50, 100, 150)
    assert seq.look_sizes(10, 4) == (3, 5, 8, 10)
    assert seq.look_sizes(2, 5) == (1, 2)  # fewer items than looks: fewer looks
    with pytest.raises(ValueError):
        seq.look_sizes(0, 3)


def _loop(outcomes):
    design = seq.Design.plan([str(i) for i in range(12)], looks=4, alpha=0.05, seed=1)
    asked = []
    result = seq.run_sequential(
        design,
        lambda items: asked.append(items) or len(items),
        lambda run, look: (outcomes[look - 1], 0.01),
    )
    return design, asked, result


@pytest.mark.parametrize(
    "outcomes, stops_at",
    [
        (["fail", "x", "x", "x"], 1),
        (["inconclusive", "pass", "x", "x"], 2),
        (["inconclusive", "inconclusive", "error", "x"], 3),  # a look that cannot be gated
        (["inconclusive"] * 4, 4),  # never stops for inconclusive: the last look ends it
    ],
)
def test_the_loop_runs_growing_prefixes_until_a_look_settles(outcomes, stops_at):
    design, asked, result = _loop(outcomes)
    assert [len(a) for a in asked] == list(design.sizes[:stops_at])
    assert all(a == list(design.order[: len(a)]) for a in asked)
    assert result.look == stops_at and result.run == design.sizes[stops_at - 1]
    record = result.record()
    assert record["stopped_early"] is (stops_at < 4) and record["outcomes"] == outcomes[:stops_at]
    json.dumps(record)


class _V:
    def __init__(self, outcome):
        self.outcome = outcome


def test_a_look_passes_at_the_pass_alpha_and_fails_at_the_fail_alpha():
    asked = []

    def at(outcomes):
        def verdict_at(alpha):
            asked.append(alpha)
            return _V(outcomes[alpha])

        return verdict_at

    assert seq.settle(at({0.01: "pass", 0.001: "pass"}), 0.01, 0.001).outcome == "pass"
    assert seq.settle(at({0.01: "fail", 0.001: "fail"}), 0.01, 0.001).outcome == "fail"
    # significant at the PASS side's alpha, not at the (stricter) FAIL side's: not settled
    assert seq.settle(at({0.01: "fail", 0.001: "inconclusive"}), 0.01, 0.001).outcome == (
        "inconclusive"
    )
    asked.clear()
    seq.settle(at({0.01: "inconclusive"}), 0.01, 0.01)
    assert asked == [0.01]  # one compare when the two sides agree


def test_the_discordance_of_zero_one_scores_ignores_declared_repeats():
    """As the gate (audit of issue 12 item 1): 0/1 scores declared repeats=16 are one sample per
    item, so the FAIL side's level is not planned on +-1/16 pseudo-items."""
    ref = {str(i): 1.0 for i in range(60)}
    cand = dict(ref, **{str(i): 0.0 for i in range(4)})
    averaged = dict(cand, **{"59": 0.5})
    # the samples per item the gate counts: one for 0/1 scores, the declared 16 once one is not
    assert seq._effective_repeats(ref, cand, 16) == 1
    assert seq._effective_repeats(ref, averaged, 16) == 16
    assert seq.discordance(ref, cand, 1) == seq.binary_discordance(60, 4, 0)
    assert seq.discordance(ref, averaged, 16) < seq.discordance(ref, averaged, 1)
    # a look of the 0/1 run: the FAIL side's alpha is the same whether it declares 16 repeats or
    # 1, and not what a discordance over 16 samples per item would give
    design = seq.Design(sizes=(20, 40, 60), total=60, alpha=0.05)
    gate = GateConfig(method="paired", margin=0.08)

    def fail_alpha(repeats: int) -> float:
        run = TaskRun(task="t", precision="int2", scores=cand, provenance={"repeats": repeats})
        where = {"identity": {}, "where": "ref.json", "refresh": "refresh"}
        return seq.look_verdict(Baseline(items=ref), run, gate, design, 3, **where)[1]

    one_sample = design.fail_alpha(3, 0.08, seq.discordance(ref, cand, 1))
    assert fail_alpha(16) == fail_alpha(1) == one_sample
    assert one_sample != design.fail_alpha(3, 0.08, seq.discordance(ref, cand, 16))


# --- against a stored reference baseline, and the decision ------------------------------------

N = 150
REF = {str(i): 1.0 for i in range(N)}  # the tiny suite: bf16 right on every item
INT2 = {k: (1.0 if int(k) % 12 == 0 else 0.0) for k in REF}  # about 8 % right, as int2


def make_suite(**extra) -> Suite:
    return Suite(
        name="s",
        model="m",
        precisions={"bf16": {"checkpoint": "org/m"}, "int2": {"checkpoint": "org/m-int2"}},
        tasks={
            "t": {
                "runner": "lmeval",
                "lmeval_task": "x",
                "metric": "acc,none",
                "gate": {"method": "paired", "margin": 0.05},
            }
        },
        **extra,
    )


def _store(root, suite, precision, scores):
    path = baseline_path(root, "s", "t", precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = TaskRun(task="t", precision=precision, scores=dict(scores))
    path.write_text(Baseline.from_run(run, identity(suite, "t", precision)).to_json())
    return path


def _sequential_run(tmp_path, suite, scores, looks=3):
    ref_path = _store(tmp_path, suite, "bf16", REF)
    reference = Baseline.from_json(ref_path.read_text())
    suite = Suite.model_validate({**suite.model_dump(), "sequential": {"looks": looks}})
    design = seq.candidate_design(suite, "t", "int2", reference)
    asked = []

    def run_items(items):
        asked.append(len(items))
        return TaskRun(task="t", precision="int2", scores={k: scores[k] for k in items})

    run = seq.run_candidate(
        design,
        reference,
        suite.tasks["t"].gate,
        run_items,
        identity=identity(suite, "t", "bf16"),
        where=str(ref_path),
        refresh="refresh",
    )
    return suite, design, asked, run


def test_a_broken_candidate_is_decided_at_the_first_look_and_the_verdict_says_so(tmp_path):
    suite, design, asked, run = _sequential_run(tmp_path, make_suite(), INT2)
    assert asked == [50] and set(run.scores) == set(design.order[:50])
    decision = decide_case(Case("s", "t", "int2"), run, suite, baselines_root=tmp_path)
    assert decision.outcome == "failed"
    assert "sequential: stopped at look 1 of 3 on 50 of 150 items" in decision.failed
    (row,) = [r for k, r in decision.rows if k == VERDICT_ROW]
    assert (row["verdict"], row["n"], row["look"], row["looks"], row["total"]) == (
        "fail",
        50,
        1,
        3,
        150,
    )
    assert "50/150 (look 1/3)" in summary_table([row])
    # the look's own p-value beside the repeated one (valid at the design's overall alpha)
    assert 0 <= row["look_p_drop"] <= row["p_drop"] < 0.05
    assert not decision.store  # a partial run is never a baseline
    json.dumps(decision.rows)


def test_an_equal_candidate_passes_when_the_boundary_allows_and_stops_there(tmp_path):
    suite, design, asked, run = _sequential_run(tmp_path, make_suite(), REF, looks=4)
    assert asked == [38, 75] and run.provenance["sequential"]["outcomes"] == [
        "inconclusive",
        "pass",
    ]
    decision = decide_case(Case("s", "t", "int2"), run, suite, baselines_root=tmp_path)
    assert decision.outcome == "ok"
    (row,) = [r for k, r in decision.rows if k == VERDICT_ROW]
    assert row["verdict"] == "pass" and row["n"] == 75 and row["look"] == 2


def test_a_candidate_that_never_settles_runs_every_item(tmp_path):
    # 4 flips down in 150: never a PASS at margin 5 pp before the end, never a FAIL
    scores = {k: (0.0 if k in ("3", "30", "60", "90") else 1.0) for k in REF}
    suite, design, asked, run = _sequential_run(tmp_path, make_suite(), scores, looks=3)
    assert asked == [50, 100, 150]
    record = run.provenance["sequential"]
    assert record["look"] == 3 and not record["stopped_early"]
    decision = decide_case(Case("s", "t", "int2"), run, suite, baselines_root=tmp_path)
    (row,) = [r for k, r in decision.rows if k == VERDICT_ROW]
    assert row["n"] == 150 and row["verdict"] == record["outcomes"][-1]
    message = decision.failed or "\n".join(decision.problems) or ""
    assert decision.outcome == "ok" or "ran all 3 looks, 150 of 150 items" in message


def test_a_partial_run_is_checked_against_its_own_history_on_the_shared_items(tmp_path):
    suite, design, asked, run = _sequential_run(tmp_path, make_suite(), INT2)
    own = _store(tmp_path, suite, "int2", INT2)  # a complete int2 baseline stored earlier
    decision = decide_case(Case("s", "t", "int2"), run, suite, baselines_root=tmp_path)
    assert decision.outcome == "failed" and not decision.problems  # no "other items" drift
    # syrupy is handed the stored baseline as it is: a partial run replaces nothing
    assert decision.store and decision.baseline.items == Baseline.from_json(own.read_text()).items
    _store(tmp_path, suite, "int2", REF)  # its history was all right: these 50 items dropped
    decision = decide_case(Case("s", "t", "int2"), run, suite, baselines_root=tmp_path)
    (drift,) = [p for p in decision.problems if "drifted from its own baseline" in p]
    assert "n=50" in drift


def test_no_design_for_the_reference_a_non_paired_gate_or_looks_1(tmp_path):
    ref = Baseline(items=REF)
    suite = Suite.model_validate({**make_suite().model_dump(), "sequential": {"looks": 4}})
    assert seq.candidate_design(suite, "t", "int2", ref).looks == 4
    assert seq.candidate_design(suite, "t", "bf16", ref) is None  # the reference runs all
    assert seq.candidate_design(suite, "t", "int2", None) is None  # nothing to gate against
    opted_out = suite.model_dump()
    opted_out["tasks"]["t"]["sequential"] = {"looks": 1}
    assert seq.candidate_design(Suite.model_validate(opted_out), "t", "int2", ref) is None
    unpaired = suite.model_dump()
    unpaired["tasks"]["t"]["gate"] = {"method": "abs_drop", "margin": 0.05}
    assert seq.settings_for(Suite.model_validate(unpaired), "t") is None  # the default skips it


# --- config --------------------------------------------------------------------------------


def _suite_file(tmp_path, text):
    path = tmp_path / "q.yaml"
    path.write_text(text)
    return load_suite(path)


BASE = """
model: m
precisions: {bf16: {checkpoint: org/m}, fp8: {checkpoint: org/m-fp8}}
tasks:
  a: {lmeval_task: x, metric: "acc,none"}
  b: {lmeval_task: y, metric: "acc,none", sequential: {looks: 2}}
"""


def test_sequential_keys_per_task_and_suite_default(tmp_path):
    suite = _suite_file(tmp_path, BASE + "sequential: {looks: 4}\n")
    assert seq.settings_for(suite, "a").looks == 4 and seq.settings_for(suite, "b").looks == 2
    plain = _suite_file(tmp_path, BASE)
    assert seq.settings_for(plain, "a") is None
    # the setting decides how a candidate runs, not its scores: baselines stay valid
    assert suite.task_config_hash("a") == plain.task_config_hash("a")
    no_key = _suite_file(tmp_path, BASE.replace(", sequential: {looks: 2}", ""))
    assert plain.task_config_hash("b") == no_key.task_config_hash("b")


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + "sequential: {looks: 0}\n", "sequential.looks"),
        (BASE + "sequential: {looks: 4, every: 10}\n", "sequential.every: unknown key"),
        (
            BASE.replace(
                "sequential: {looks: 2}}", "sequential: {looks: 2}, gate: {method: abs_drop}}"
            ),
            "sequential needs gate.method 'paired'",
        ),
    ],
)
def test_bad_sequential_settings_are_suite_errors(tmp_path, text, message):
    with pytest.raises(SuiteError, match=message):
        _suite_file(tmp_path, text)


# --- seeded simulations -------------------------------------------------------------------
# Each scenario: both designs decide the same seeded draws; "slack" is 3 standard errors of the
# paired difference (the runs on which the two designs disagree) plus the rounding of a rate.


def _slack(sim, outcome):
    differ = np.mean((sim.fixed == outcome) != (sim.sequential == outcome))
    return 3 * math.sqrt(differ / len(sim.fixed)) + 1e-9


SCENARIOS = {  # name: (n, margin, discordance, looks)
    "tiny arith, 3 looks": (150, 0.05, 0.05, 3),
    "tiny words, 3 looks": (100, 0.06, 0.05, 3),
    "n 400, 4 looks": (400, 0.03, 0.10, 4),
    "n 400, 2 looks": (400, 0.03, 0.10, 2),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_false_pass_and_false_fail_stay_at_the_fixed_designs(name):
    n, margin, rho, looks = SCENARIOS[name]
    runs = 8000
    # a drop of exactly the margin: PASS is the error
    worse = seq.simulate(
        n=n, margin=margin, looks=looks, drop=margin, discordance=rho, runs=runs, seed=11
    )
    assert worse.rate("sequential", "pass") <= worse.rate("fixed", "pass") + _slack(worse, "pass")
    assert worse.rate("sequential", "pass") <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    # no drop: FAIL is the error
    equal = seq.simulate(
        n=n, margin=margin, looks=looks, drop=0.0, discordance=rho, runs=runs, seed=12
    )
    assert equal.rate("sequential", "fail") <= equal.rate("fixed", "fail") + _slack(equal, "fail")
    assert equal.rate("sequential", "fail") <= 0.05


def test_a_broken_candidate_is_decided_on_a_fraction_of_the_items():
    n, margin = 400, 0.03
    broken = seq.simulate(n=n, margin=margin, looks=4, drop=3 * margin, runs=3000, seed=5)
    assert broken.rate("sequential", "fail") >= broken.rate("fixed", "fail") - 0.01
    assert broken.share_used < 0.65  # fixed: 100 %
    int2 = seq.simulate(n=150, margin=0.05, looks=3, drop=0.92, discordance=0.0, runs=500, seed=6)
    assert int2.rate("sequential", "fail") == 1.0 and int2.share_used == pytest.approx(1 / 3)


def test_the_benchmark_shows_where_the_40_percent_target_is_met(capsys):
    """benchmarks/sequential_items.py: besides no drop, the margin and 3x the margin, a drop of
    5x the margin and the tiny int2's, each broken row saying whether it was decided on <= 40 %
    of the items (a collapse is: 1/K of them)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "sequential_items.py"
    spec = importlib.util.spec_from_file_location("quantgate_bench_sequential_items", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny = {name: spec for name, spec in bench.SCENARIOS.items() if name.startswith("tiny")}
    rows = {
        (r["scenario"], r["drop"]): r for r in bench.rows(tiny, [3], runs=200, seed=1, alpha=0.05)
    }
    for (name, drop), row in rows.items():
        # broken (a drop of 3x the margin or more, from the numbers): the labelled 3x, 5x, int2
        assert row["broken"] is (drop not in ("none", "margin"))
        if drop.startswith("int2"):  # the collapse: decided at the first look
            n = tiny[name][0]
            assert row["share"] == pytest.approx(seq.look_sizes(n, 3)[0] / n)
            assert row["target"] is True
            assert row["fail"][0] == 1.0
    assert bench.main(["--runs", "20", "--looks", "3", "--no-planned"]) == 0
    out = capsys.readouterr().out
    assert "5x margin" in out and "int2 65%" in out and "<= 40 %" in out


def test_the_modules_docstring_examples_are_true():
    import doctest

    result = doctest.testmod(seq)
    assert result.attempted > 0 and result.failed == 0


def test_a_nan_p_value_is_never_the_most_significant():
    """Review finding: NaN passed ``not p > 0`` and came back 0.0, first in Holm's order."""
    from quantgate.sequential import repeated_p

    def level_at(a: float) -> float:
        return a / 10

    assert repeated_p(float("nan"), level_at) == 1.0
    assert repeated_p(0.0, level_at) == 0.0 and repeated_p(None, level_at) is None
