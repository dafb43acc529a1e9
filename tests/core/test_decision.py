"""quantgate.decision.decide_case as a table over baseline files in tmp_path: no pytester, no
server. Each row: which baselines exist, the run, the flags -> what the plugin must do."""

from __future__ import annotations

import json

import pytest

from quantgate.baselines import Baseline, baseline_path, identity
from quantgate.cases import Case
from quantgate.config import Suite
from quantgate.decision import decide_case
from quantgate.report import LIVEBENCH_ROW, VERDICT_ROW
from quantgate.runs import TaskRun

N = 200
REF = {str(i): float(i % 2) for i in range(N)}  # right on odd items
BROKEN = {k: 0.0 for k in REF}  # every odd item lost
SMALL = {k: REF[k] for k in list(REF)[:20]}  # 20 items: one flip cannot be told from noise
ONE_FLIP = {**SMALL, "1": 0.0}


def make_suite(**task) -> Suite:
    return Suite(
        name="s",
        model="m",
        precisions={"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
        tasks={
            "t": {
                "runner": "lmeval",
                "lmeval_task": "x",
                "metric": "acc,none",
                "gate": {"method": "paired", "margin": 0.05},
                **task,
            }
        },
    )


def run_of(precision: str, scores: dict, **provenance) -> TaskRun:
    return TaskRun(task="t", precision=precision, scores=dict(scores), provenance=provenance)


def store(root, suite, precision, scores, **provenance):
    """A baseline of ``precision`` as --snapshot-update would write it (``checkpoint=`` etc.
    override its identity)."""
    mine = {**identity(suite, "t", precision), **provenance}
    path = baseline_path(root, "s", "t", precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Baseline.from_run(run_of(precision, scores), mine).to_json())
    return path


def rows(decision, key=VERDICT_ROW):
    return [(r["vs"], r["verdict"]) for k, r in decision.rows if k == key]


# (stored baselines {precision: scores}, case precision, run scores, update, limit)
#   -> (outcome, store, verdict rows, text every message must contain)
TABLE = {
    "reference, first run: no baseline, with the command that creates it": (
        {},
        "bf16",
        REF,
        False,
        None,
        (
            "problems",
            False,
            [("none", "baseline none")],
            "pytest -m accuracy --suite s --precision bf16 --snapshot-update",
        ),
    ),
    "reference, --snapshot-update: stored, nothing gated": (
        {},
        "bf16",
        REF,
        True,
        None,
        ("ok", True, [("written", "baseline written")], ""),
    ),
    "reference, --snapshot-update like the baseline it replaces: stored, drift shown": (
        {"bf16": REF},
        "bf16",
        REF,
        True,
        None,
        ("ok", True, [("replaced", "pass")], ""),
    ),
    "reference, --snapshot-update failing against the one it replaces: refused": (
        {"bf16": REF},
        "bf16",
        BROKEN,
        True,
        None,
        ("problems", False, [("replaced", "fail")], "--snapshot-update --accept-drift"),
    ),
    "reference, same as its history: stored (syrupy compares), own-history row": (
        {"bf16": REF},
        "bf16",
        REF,
        False,
        None,
        ("ok", True, [("own history", "pass")], ""),
    ),
    "reference, other items than its history: drift": (
        {"bf16": {"0": 1.0}},
        "bf16",
        REF,
        False,
        None,
        ("problems", False, [], "drifted from its own baseline"),
    ),
    "candidate, equal to the reference: pass": (
        {"bf16": REF},
        "fp8",
        REF,
        False,
        None,
        ("ok", False, [("bf16", "pass")], ""),
    ),
    "candidate, broken: the gate fails it": (
        {"bf16": REF},
        "fp8",
        BROKEN,
        False,
        None,
        ("failed", False, [("bf16", "fail")], "-50.0 pp"),
    ),
    "candidate, one flip in 20: inconclusive fails the case": (
        {"bf16": SMALL},
        "fp8",
        ONE_FLIP,
        False,
        None,
        ("problems", False, [("bf16", "inconclusive")], "inconclusive"),
    ),
    "candidate, one flip on a --limit smoke run: only a warning": (
        {"bf16": SMALL},
        "fp8",
        ONE_FLIP,
        False,
        20,
        ("warning", False, [("bf16", "inconclusive")], "(--limit 20)"),
    ),
    "candidate, --limit pairs with the reference's same items": (
        {"bf16": REF},
        "fp8",
        {k: REF[k] for k in list(REF)[:10]},
        False,
        10,
        ("warning", False, [("bf16", "inconclusive")], "(--limit 10)"),
    ),
    "candidate, no reference baseline: the command that creates it": (
        {},
        "fp8",
        REF,
        False,
        None,
        ("problems", False, [], "--precision bf16 --snapshot-update"),
    ),
    "candidate, with its own history too: gated and stored": (
        {"bf16": REF, "fp8": REF},
        "fp8",
        REF,
        False,
        None,
        ("ok", True, [("bf16", "pass")], ""),
    ),
}


@pytest.mark.parametrize("name", TABLE)
def test_decide_case(name, tmp_path):
    stored, precision, scores, update, limit, expected = TABLE[name]
    outcome, stores, verdict_rows, text = expected
    suite = make_suite()
    for p, items in stored.items():
        store(tmp_path, suite, p, items)
    decision = decide_case(
        Case("s", "t", precision),
        run_of(precision, scores),
        suite,
        baselines_root=tmp_path,
        update=update,
        limit=limit,
    )
    assert decision.outcome == outcome, (decision.problems, decision.failed, decision.warning)
    assert decision.store is stores
    assert rows(decision) == verdict_rows
    messages = [*decision.problems, decision.failed or "", decision.warning or ""]
    if text:
        assert any(text in m for m in messages), messages
    else:  # nothing to say: no message at all
        assert not any(messages), messages
    assert decision.baseline.items == scores
    json.dumps(decision.rows)  # rows travel through pytest-xdist: plain JSON-safe data


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_a_stale_baseline_is_never_used(precision, tmp_path):
    """A baseline of another checkpoint is reported with the refresh command, not compared."""
    suite = make_suite()
    path = store(tmp_path, suite, "bf16", REF, checkpoint="org/other")
    decision = decide_case(
        Case("s", "t", precision), run_of(precision, REF), suite, baselines_root=tmp_path
    )
    assert decision.outcome == "problems" and not decision.store
    (message,) = decision.problems
    assert f"the baseline at {path} is stale" in message
    assert 'checkpoint: baseline "org/other", suite "org/m"' in message
    assert "--suite s --precision bf16 --snapshot-update" in message
    assert rows(decision) == []


def test_a_changed_task_makes_every_baseline_stale(tmp_path):
    store(tmp_path, make_suite(), "bf16", REF)
    changed = make_suite(limit=10)
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", REF), changed, baselines_root=tmp_path
    )
    assert "task_config_hash" in decision.problems[0]


def test_update_rewrites_a_stale_reference(tmp_path):
    suite = make_suite()
    store(tmp_path, suite, "bf16", REF, checkpoint="org/other")
    decision = decide_case(
        Case("s", "t", "bf16"), run_of("bf16", BROKEN), suite, baselines_root=tmp_path, update=True
    )
    assert decision.outcome == "ok" and decision.store
    assert decision.baseline.provenance["checkpoint"] == "org/m"


def test_accept_drift_stores_a_reference_that_fails_against_the_old_one(tmp_path):
    suite = make_suite()
    store(tmp_path, suite, "bf16", REF)
    decision = decide_case(
        Case("s", "t", "bf16"),
        run_of("bf16", BROKEN),
        suite,
        baselines_root=tmp_path,
        update=True,
        accept_drift=True,
    )
    assert decision.outcome == "ok" and decision.store
    assert rows(decision) == [("replaced", "fail")]


EXTERNAL = {"engine": "external", "endpoint": "http://gpu-7:8000/v1"}


@pytest.mark.parametrize(
    "served, checkpoint, matches",
    [
        ("org/m-fp8", "org/m-fp8", True),
        ("/models/M-FP8", "org/m-fp8", True),  # a local path, another case
        ("m-fp8", "org/m-fp8", True),  # --served-model-name without the org
        ("other-model-7b", "org/m-fp8", False),
        ("org/m", "org/m-fp8", False),  # the BF16 model served as the fp8 deployment
    ],
)
def test_a_deployment_serving_another_model_warns(served, checkpoint, matches, tmp_path):
    suite = make_suite()
    fp8 = suite.precisions["fp8"].model_copy(update={"checkpoint": checkpoint})
    suite = suite.model_copy(update={"precisions": {**suite.precisions, "fp8": fp8}})
    store(tmp_path, suite, "bf16", REF)
    run = run_of("fp8", REF, served_model=served, **EXTERNAL)
    decision = decide_case(Case("s", "t", "fp8"), run, suite, baselines_root=tmp_path)
    assert decision.baseline.provenance["served_model"] == served  # recorded with the baseline
    if matches:
        assert decision.outcome == "ok", decision.warning
        return
    assert decision.outcome == "warning" and rows(decision) == [("bf16", "pass")]
    assert f"http://gpu-7:8000/v1 serves {served!r}" in decision.warning
    assert f"fp8 checkpoint {checkpoint!r}" in decision.warning
    strict = decide_case(
        Case("s", "t", "fp8"), run, suite, baselines_root=tmp_path, strict_identity=True
    )
    assert strict.outcome == "problems" and "(--strict-identity)" in strict.problems[0]


def test_a_tiny_checkpoint_is_named_by_its_variant():
    from quantgate.decision import _model_names_match

    assert _model_names_match("quantgate/tiny-fp8", "tiny://fp8")
    assert not _model_names_match("quantgate/tiny-bf16", "tiny://fp8")


def test_a_deployment_serving_another_model_cannot_replace_the_reference(tmp_path):
    """Probe #23: a server serving another model overwrote bf16.json 100 % -> 0.7 % and passed."""
    suite = make_suite()
    path = store(tmp_path, suite, "bf16", REF)
    before = path.read_text()
    run = run_of("bf16", BROKEN, served_model="other-model-7b", **EXTERNAL)
    decision = decide_case(Case("s", "t", "bf16"), run, suite, baselines_root=tmp_path, update=True)
    assert decision.outcome == "problems" and not decision.store
    assert "other-model-7b" in decision.warning and "not replacing" in decision.problems[0]
    assert path.read_text() == before


def test_livebench_rows_carry_the_reference_numbers(tmp_path):
    suite = make_suite()
    ref_stats = {"official": 0.5, "per_question_mean": 0.5, "n": N, "categories": {}}
    mine = {"official": 0.4, "per_question_mean": 0.45, "n": N, "categories": {}}
    store(tmp_path, suite, "bf16", REF, livebench=ref_stats)
    reference = decide_case(
        Case("s", "t", "bf16"),
        run_of("bf16", REF, livebench=ref_stats),
        suite,
        baselines_root=tmp_path,
    )
    candidate = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", BROKEN, livebench=mine), suite, baselines_root=tmp_path
    )
    (ref_row,) = [r for k, r in reference.rows if k == LIVEBENCH_ROW]
    (cand_row,) = [r for k, r in candidate.rows if k == LIVEBENCH_ROW]
    assert ref_row["vs"] is None and ref_row["reference"] is None
    assert cand_row["vs"] == "bf16" and cand_row["reference"]["official"] == 0.5
    assert candidate.outcome == "failed" and "Overall (x100" in candidate.failed


def test_runs_without_livebench_numbers_record_no_livebench_row(tmp_path):
    suite = make_suite()
    store(tmp_path, suite, "bf16", REF)
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", REF), suite, baselines_root=tmp_path
    )
    assert rows(decision, LIVEBENCH_ROW) == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00binary", b"\x89PNG\r\n\x1a\n"],
    ids=["not json", "not utf-8", "a picture"],
)
def test_an_unreadable_own_baseline_is_absent_under_update(tmp_path, content):
    """--snapshot-update rewrites a corrupt file (the fix its own error message names)."""
    suite = make_suite()
    path = baseline_path(tmp_path, "s", "t", "bf16")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    decision = decide_case(
        Case("s", "t", "bf16"), run_of("bf16", REF), suite, baselines_root=tmp_path, update=True
    )
    assert decision.outcome == "ok" and decision.store


@pytest.mark.parametrize("content", [b"[]", b"\xff\xfe\x00binary"], ids=["a list", "not utf-8"])
def test_an_unreadable_own_baseline_is_a_problem_naming_the_file(tmp_path, content):
    suite = make_suite()
    store(tmp_path, suite, "bf16", REF)
    path = baseline_path(tmp_path, "s", "t", "fp8")
    path.write_bytes(content)
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", REF), suite, baselines_root=tmp_path
    )
    assert decision.outcome == "problems" and not decision.store
    assert str(path) in decision.problems[0]
    assert "--suite s --precision fp8 --snapshot-update" in decision.problems[0]


def test_a_candidate_with_other_items_names_the_reference_and_the_items(tmp_path):
    """Never a raw GateError: the reference file, how many items differ, the refresh."""
    suite = make_suite()
    ref_path = store(tmp_path, suite, "bf16", REF)
    other = {**{k: v for k, v in REF.items() if k != "7"}, "extra-1": 1.0}
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", other), suite, baselines_root=tmp_path
    )
    assert decision.outcome == "problems"
    (message,) = decision.problems
    assert str(ref_path) in message
    assert "1 only in reference: 7" in message and "1 only in candidate: extra-1" in message
    assert "--suite s --precision bf16 --snapshot-update" in message


def test_own_history_drift_over_other_items_says_which(tmp_path):
    suite = make_suite()
    store(tmp_path, suite, "bf16", {**REF, "extra-1": 1.0})
    decision = decide_case(
        Case("s", "t", "bf16"), run_of("bf16", REF), suite, baselines_root=tmp_path
    )
    (message,) = decision.problems
    assert "drifted from its own baseline" in message
    assert "1 only in the baseline: extra-1" in message


def test_an_unreadable_reference_baseline_is_a_problem_naming_the_file(tmp_path):
    """A reference that is not text (or cannot be read) is a problem with the file and the fix,
    never a raw UnicodeDecodeError / PermissionError."""
    suite = make_suite()
    path = store(tmp_path, suite, "bf16", REF)
    path.write_bytes(b"\xff\xfe\x00binary")
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", REF), suite, baselines_root=tmp_path
    )
    assert decision.outcome == "problems" and not decision.store
    assert str(path) in decision.problems[0] and "UTF-8" in decision.problems[0]
    assert "--suite s --precision bf16 --snapshot-update" in decision.problems[0]


def test_throughput_skips_only_where_it_alone_would_start_a_server():
    from quantgate.decision import throughput_skip

    case = Case("s", "throughput", "fp8")
    why = throughput_skip(case, cached_tasks=["t", "u"])
    assert why.startswith("s-throughput-fp8: every accuracy case of fp8 in this session (t, u)")
    assert why.endswith('pytest -m "accuracy and benchmark" --suite s --precision fp8')
    assert throughput_skip(case, cached_tasks=["t"], server_started=True) is None
    assert throughput_skip(case) is None  # throughput selected alone: it starts the server
    assert throughput_skip(case, cached_tasks=["t"], external=True) is None  # --server-url
    assert throughput_skip(case, from_cache=True) == (
        "--from-cache: throughput needs a running server"
    )


def test_from_cache_refusal_says_how_many_lmeval_items_it_lacks(tmp_path):
    from quantgate.decision import from_cache_refusal

    data = tmp_path / "items.jsonl"
    data.write_text("".join(f'{{"q": {i}}}\n' for i in range(7)))
    case = Case("s", "t", "fp8")
    assert from_cache_refusal(case, make_suite(data_files={"test": str(data)})).endswith(
        "(7 of 7 items have no finished lm-eval run in the cache)"
    )
    suite = make_suite(data_files={"test": str(data)}, limit=5)
    assert "(3 of 3 items" in from_cache_refusal(case, suite, limit=3)  # --limit 3
    assert "(5 of 5 items" in from_cache_refusal(case, suite)
    assert from_cache_refusal(case, make_suite()).endswith(
        "(none of its items has a finished lm-eval run in the cache)"
    )
    # a sequential look runs a chunk of the items: no count of the whole task is claimed
    assert from_cache_refusal(case, suite, whole_task=False).endswith(
        "(a look's chunk of its items has no finished lm-eval run in the cache)"
    )


def test_an_own_history_check_from_cached_answers_says_so(tmp_path):
    """A reference whose every answer came from the generation cache compares that cache with
    its baseline, not a new run with the old one: the row says so (the verdict stands)."""
    from quantgate.report import summary_table

    suite = make_suite()
    store(tmp_path, suite, "bf16", REF)
    case = Case("s", "t", "bf16")
    fresh = decide_case(case, run_of("bf16", REF), suite, baselines_root=tmp_path)
    cached = decide_case(case, run_of("bf16", REF), suite, baselines_root=tmp_path, cached=True)
    assert rows(fresh) == rows(cached) == [("own history", "pass")]
    (fresh_row,) = [r for k, r in fresh.rows if k == VERDICT_ROW]
    (cached_row,) = [r for k, r in cached.rows if k == VERDICT_ROW]
    assert not fresh_row.get("cached") and cached_row["cached"] is True
    assert "cached" not in summary_table([fresh_row])
    assert "pass (cached: no new run)" in summary_table([cached_row])
    assert cached.outcome == fresh.outcome == "ok" and cached.store == fresh.store


def test_a_candidate_from_cached_answers_is_gated_as_usual(tmp_path):
    suite = make_suite()
    store(tmp_path, suite, "bf16", REF)
    decision = decide_case(
        Case("s", "t", "fp8"), run_of("fp8", REF), suite, baselines_root=tmp_path, cached=True
    )
    (row,) = [r for k, r in decision.rows if k == VERDICT_ROW]
    assert (row["vs"], row["verdict"]) == ("bf16", "pass") and not row.get("cached")
