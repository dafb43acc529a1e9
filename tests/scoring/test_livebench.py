"""LiveBench judgment fixes and aggregation (quantgate.scoring.livebench, quantgate.jsonl).

The fixture (tests/fixtures/livebench/data/live_bench) has 8 questions; ids are
sha256("quantgate-fixture/<task>/<n>"). Scores (IF: (all_followed + fraction_followed) / 2):

    category               task          question  bf16  fp8
    instruction_following  paraphrase    1         1.0   1.0
                           paraphrase    2         1.0   0.25
                           paraphrase    3         0.25  0.25
                           simplify      1         0.25  0.25
    math                   math_comp     1         1     1
                           math_comp     2         0     0     (fp8: judged 1 first, re-judged 0
                                                                at the end)
    reasoning              zebra_puzzle  1         1     1
                           zebra_puzzle  2         1     1

Every IF judgment is labelled task "simplify" (upstream's old-IF path writes the first question's
task).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from quantgate.jsonl import JsonlError, read_jsonl, write_jsonl
from quantgate.scoring.livebench import (
    GroupScore,
    Judgment,
    dedupe_questions,
    read_judgments,
    read_questions,
    relative_table,
    summarize,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "livebench" / "data" / "live_bench"
NAMES = [
    "paraphrase/1",
    "paraphrase/2",
    "paraphrase/3",
    "simplify/1",
    "math_comp/1",
    "math_comp/2",
    "zebra_puzzle/1",
    "zebra_puzzle/2",
]
QID = {name: hashlib.sha256(f"quantgate-fixture/{name}".encode()).hexdigest() for name in NAMES}


def fixture_judgments() -> list[Judgment]:
    return [
        j
        for path in sorted(FIXTURE.rglob("ground_truth_judgment.jsonl"))
        for j in read_judgments(path)
    ]


def fixture_questions() -> list[dict]:
    return [q for path in sorted(FIXTURE.rglob("question.jsonl")) for q in read_questions(path)]


def judgment(
    question_id: str,
    score: float,
    *,
    task: str = "t",
    category: str = "c",
    model: str = "bf16",
    **extra,
) -> Judgment:
    return Judgment(
        question_id=question_id, task=task, model=model, score=score, category=category, **extra
    )


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


DROP = object()  # a field to leave out
GOOD_ROW = {
    "question_id": QID["math_comp/1"],
    "task": "math_comp",
    "model": "fp8",
    "score": 1,
    "tstamp": 1733100010.96,
    "category": "math",
}


# ---------------------------------------------------------------- fixture and readers


def test_fixture_is_laid_out_like_livebench_with_sha256_ids():
    questions = fixture_questions()
    assert sorted(q["question_id"] for q in questions) == sorted(QID.values())
    assert all(len(q["question_id"]) == 64 and int(q["question_id"], 16) >= 0 for q in questions)
    paraphrase = read_questions(FIXTURE / "instruction_following" / "paraphrase" / "question.jsonl")
    assert [q["livebench_release_date"] for q in paraphrase] == ["2024-11-25"] * 3
    assert paraphrase[0]["instruction_id_list"] == [
        "detectable_format:number_bullet_lists",
        "change_case:english_lowercase",
    ]
    assert paraphrase[0]["kwargs"] == [{"num_bullets": 3}, {}]


def test_read_judgments_gives_frozen_rows_with_their_file_and_line():
    path = FIXTURE / "math" / "math_comp" / "model_judgment" / "ground_truth_judgment.jsonl"
    rows = read_judgments(path)
    assert [(j.model, j.score, j.line) for j in rows] == [
        ("bf16", 1.0, 1),
        ("bf16", 0.0, 2),
        ("fp8", 1.0, 3),
        ("fp8", 1.0, 4),
        ("fp8", 0.0, 6),
    ]  # line 5 is blank
    assert rows[0] == Judgment(QID["math_comp/1"], "math_comp", "bf16", 1.0, "math")
    assert rows[0].source == str(path) and rows[0].turn is None and rows[0].eval_status is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].score = 0.0  # type: ignore[misc]
    if_row = read_judgments(
        FIXTURE
        / "instruction_following"
        / "simplify"
        / "model_judgment"
        / "ground_truth_judgment.jsonl"
    )[0]
    assert (if_row.turn, if_row.task, if_row.score) == (1, "simplify", 0.25)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    row = json.dumps(GOOD_ROW)
    path = write_lines(
        tmp_path / "ground_truth_judgment.jsonl",
        ["", row, "   \t", row.replace('"fp8"', '"bf16"'), ""],
    )
    assert [line for line, _ in read_jsonl(path)] == [2, 4]
    assert [(j.model, j.line) for j in read_judgments(path)] == [("fp8", 2), ("bf16", 4)]


def test_malformed_json_names_file_line_and_error(tmp_path):
    path = write_lines(
        tmp_path / "ground_truth_judgment.jsonl",
        [json.dumps(GOOD_ROW), "", '{"question_id": "ab12", "score": 1,'],
    )
    with pytest.raises(JsonlError) as caught:
        read_judgments(path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith(
        f"{path}:3: malformed JSON: Expecting property name enclosed in double quotes"
    )
    assert "fix or delete that line" in message
    assert (caught.value.path, caught.value.line) == (str(path), 3)


def test_a_line_that_is_not_an_object_is_rejected(tmp_path):
    path = write_lines(tmp_path / "question.jsonl", ["[1, 2]"])
    with pytest.raises(
        JsonlError, match=r"question\.jsonl:1: expected a JSON object, found list \[1, 2\]"
    ):
        read_questions(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"model": DROP},
            "field 'model': found nothing (field missing), expected a non-empty string",
        ),
        (
            {"score": "0.5"},
            "field 'score': found \"0.5\" (str), expected a number in [0, 1], or -1",
        ),
        ({"score": 87.5}, "field 'score': found 87.5 (float), expected a number in [0, 1], or -1"),
        ({"score": True}, "field 'score': found true (bool), expected a number"),
        ({"question_id": 123}, "field 'question_id': found 123 (int), expected a non-empty string"),
        ({"turn": "1"}, "field 'turn': found \"1\" (str), expected an integer or null"),
        ({"eval_status": 0}, "field 'eval_status': found 0 (int), expected a string or null"),
    ],
)
def test_missing_or_ill_typed_field_is_named_with_what_was_found(tmp_path, change, expected):
    row = {key: value for key, value in {**GOOD_ROW, **change}.items() if value is not DROP}
    path = write_lines(
        tmp_path / "ground_truth_judgment.jsonl", [json.dumps(GOOD_ROW), json.dumps(row)]
    )
    with pytest.raises(JsonlError) as caught:
        read_judgments(path)
    assert str(caught.value).startswith(f"{path}:2: {expected}")


def test_question_without_task_is_rejected(tmp_path):
    path = write_lines(
        tmp_path / "question.jsonl",
        [json.dumps({"question_id": QID["simplify/1"], "category": "instruction_following"})],
    )
    with pytest.raises(JsonlError, match=r":1: field 'task': found nothing \(field missing\)"):
        read_questions(path)


# --------------------------------------------------------------- dedupe_questions (the set() crash)


def test_set_over_question_dicts_crashes_like_upstream_and_dedupe_fixes_it():
    questions = fixture_questions()[:4]  # the four IF questions: paraphrase x3, simplify
    # make_match_single builds MatchSingle(dict(q), model, answer): one copy of each question per
    # model.
    match_questions = [dict(q) for q in questions for _model in ("bf16", "fp8")]
    with pytest.raises(TypeError, match="unhashable type: 'dict'"):
        list(set(match_questions))  # gen_ground_truth_judgment.py line 468
    unique = dedupe_questions(match_questions)
    assert [q["question_id"] for q in unique] == [QID[n] for n in NAMES[:4]]
    assert all(
        kept is original for kept, original in zip(unique, match_questions[::2])
    )  # first copies
    assert unique[0]["task"] == "paraphrase"  # line 469's task_name, now deterministic


def test_dedupe_never_copies_or_changes_the_questions():
    questions = fixture_questions()
    with_output_file = [
        {**q, "_output_file": f"data/live_bench/{q['category']}/{q['task']}"} for q in questions
    ]
    everything = questions + with_output_file
    before = copy.deepcopy(everything)
    unique = dedupe_questions(everything)
    assert everything == before
    assert len(unique) == 8 and all(u is q for u, q in zip(unique, questions))


def test_dedupe_without_question_id_uses_canonical_json():
    a = {"task": "x", "turns": ["t"]}
    b = {"turns": ["t"], "task": "x"}  # equal to a, keys in another order
    c = {
        "question_id": None,
        "task": "x",
        "turns": ["t"],
    }  # None id: whole-question key, differs from a
    d = {"task": "y", "turns": ["t"]}
    assert [id(q) for q in dedupe_questions([a, b, c, d, dict(c)])] == [id(a), id(c), id(d)]


# ---------------------------------------------------------------- summarize


def test_official_and_per_question_mean_by_hand():
    summaries = summarize(fixture_judgments(), fixture_questions())
    bf16, fp8 = summaries["bf16"], summaries["fp8"]
    assert list(summaries) == ["bf16", "fp8"]
    assert bf16.tasks == {
        "math_comp": GroupScore(0.5, 0.5, 2),  # (1 + 0) / 2
        "paraphrase": GroupScore(0.75, 0.75, 3),  # (1 + 1 + 0.25) / 3
        "simplify": GroupScore(0.25, 0.25, 1),
        "zebra_puzzle": GroupScore(1.0, 1.0, 2),
    }
    assert bf16.categories == {
        "instruction_following": GroupScore(
            official=(0.75 + 0.25) / 2, mean=(1 + 1 + 0.25 + 0.25) / 4, n=4
        ),
        "math": GroupScore(0.5, 0.5, 2),
        "reasoning": GroupScore(1.0, 1.0, 2),
    }
    assert bf16.official == pytest.approx((0.5 + 0.5 + 1.0) / 3)  # 0.6667
    assert bf16.per_question_mean == pytest.approx(
        (1 + 1 + 0.25 + 0.25 + 1 + 0 + 1 + 1) / 8
    )  # 0.6875
    # fp8: paraphrase (1 + 0.25 + 0.25) / 3 = 0.5, simplify 0.25 -> IF 0.375; math 0.5;
    # reasoning 1.0
    assert fp8.categories["instruction_following"].official == pytest.approx((0.5 + 0.25) / 2)
    assert fp8.official == pytest.approx((0.375 + 0.5 + 1.0) / 3)  # 0.625
    assert fp8.per_question_mean == pytest.approx(
        (1 + 0.25 + 0.25 + 0.25 + 1 + 0 + 1 + 1) / 8
    )  # 0.59375
    assert (bf16.n, fp8.n) == (8, 8)
    assert (
        bf16.n_skipped,
        bf16.n_relabeled,
        bf16.unknown_question_ids,
        bf16.missing_question_ids,
    ) == (0, 3, (), ())


def test_if_task_labels_come_from_the_questions_and_change_the_official_number():
    judgments = fixture_judgments()
    as_labelled = summarize(judgments)["bf16"]
    assert set(as_labelled.tasks) == {
        "simplify",
        "math_comp",
        "zebra_puzzle",
    }  # no "paraphrase" at all
    assert as_labelled.tasks["simplify"] == GroupScore(0.625, 0.625, 4)  # (1 + 1 + 0.25 + 0.25) / 4
    assert as_labelled.official == pytest.approx(
        (0.625 + 0.5 + 1.0) / 3
    )  # 0.7083: IF as a per-question mean
    fixed = summarize(judgments, fixture_questions())["bf16"]
    assert fixed.official == pytest.approx((0.5 + 0.5 + 1.0) / 3)  # 0.6667
    assert fixed.n_relabeled == 3  # the three paraphrase rows; the simplify row was right
    assert (
        fixed.per_question_mean == as_labelled.per_question_mean
    )  # labels do not move the per-question mean


def test_duplicate_rows_last_one_wins():
    fp8 = summarize(fixture_judgments(), fixture_questions())["fp8"]
    assert fp8.n_duplicates == 1
    assert fp8.tasks["math_comp"] == GroupScore(
        0.5, 0.5, 2
    )  # (1 + 0) / 2; the first row (1) would give 1.0
    rows = [
        judgment("q1", 0.0),
        judgment("q2", 1.0),
        judgment("q1", 1.0),
        judgment("q1", 0.0, turn=1),
    ]
    summary = summarize(rows)["bf16"]
    # key (model, question_id, turn): q1/None 0 -> 1 (last wins), q2 1, q1/turn 1 is its own row
    assert (summary.n_duplicates, summary.n, summary.per_question_mean) == (
        1,
        3,
        pytest.approx((1 + 1 + 0) / 3),
    )


def test_skipped_rows_are_dropped_and_counted():
    rows = [
        judgment("q1", 1.0, task="a"),
        judgment("q2", -1, task="a"),
        judgment("q3", 0.0, task="a"),
        judgment("q4", 1.0, task="b"),
    ]
    summary = summarize(rows)["bf16"]
    assert (summary.n, summary.n_skipped) == (3, 1)
    assert summary.per_question_mean == pytest.approx((1 + 0 + 1) / 3)  # the -1 is not a score
    assert summary.tasks["a"] == GroupScore(0.5, 0.5, 2)  # (1 + 0) / 2
    assert summary.official == pytest.approx((0.5 + 1.0) / 2)  # one category: mean of task means
    questions = [
        {"question_id": f"q{i}", "task": "a" if i < 4 else "b", "category": "c"}
        for i in range(1, 5)
    ]
    assert (
        summarize(rows, questions)["bf16"].missing_question_ids == ()
    )  # a skipped row is a row, not missing


def test_eval_error_rows_count_as_zero_and_are_surfaced(tmp_path):
    error = "ImportError: Missing optional dependency 'lxml'.  Use pip or conda to install lxml."
    rows = [
        {
            "question_id": "f1",
            "task": "tablereformat",
            "model": "fp8",
            "score": 1,
            "category": "data_analysis",
        },
        {
            "question_id": "f2",
            "task": "tablereformat",
            "model": "fp8",
            "score": 0,
            "category": "data_analysis",
            "eval_status": "eval_error",
            "error": True,
            "error_msg": error,
        },
        {
            "question_id": "f3",
            "task": "tablereformat",
            "model": "fp8",
            "score": 0,
            "category": "data_analysis",
            "eval_status": "eval_error",
            "error": "RuntimeError: sandbox timed out",
        },
    ]
    write_jsonl(tmp_path / "ground_truth_judgment.jsonl", rows)
    summary = summarize(read_judgments(tmp_path / "ground_truth_judgment.jsonl"))["fp8"]
    assert [(j.question_id, j.error, j.line) for j in summary.eval_errors] == [
        ("f2", error, 2),
        ("f3", "RuntimeError: sandbox timed out", 3),
    ]
    assert all(j.is_eval_error for j in summary.eval_errors)
    assert (summary.n, summary.per_question_mean) == (
        3,
        pytest.approx((1 + 0 + 0) / 3),
    )  # kept as 0, as upstream


def test_judgments_outside_the_questions_are_left_out_and_unjudged_questions_listed():
    extra = {"question_id": "d" * 64, "category": "math", "task": "math_comp", "turns": ["?"]}
    questions = [q for q in fixture_questions() if q["question_id"] != QID["zebra_puzzle/2"]] + [
        extra
    ]
    bf16 = summarize(fixture_judgments(), questions)["bf16"]
    assert bf16.unknown_question_ids == (QID["zebra_puzzle/2"],)
    assert bf16.missing_question_ids == ("d" * 64,)
    assert bf16.n == 7 and bf16.categories["reasoning"] == GroupScore(1.0, 1.0, 1)
    assert bf16.per_question_mean == pytest.approx((1 + 1 + 0.25 + 0.25 + 1 + 0 + 1) / 7)


# ---------------------------------------------------------------- relative_table


def test_relative_table_against_bf16():
    rows = {r.model: r for r in relative_table(summarize(fixture_judgments(), fixture_questions()))}
    bf16_official, fp8_official = (0.5 + 0.5 + 1.0) / 3, (0.375 + 0.5 + 1.0) / 3
    bf16_mean, fp8_mean = 5.5 / 8, 4.75 / 8
    assert (rows["bf16"].official_relative, rows["bf16"].official_gap_pp) == (1.0, 0.0)
    fp8 = rows["fp8"]
    assert fp8.official_relative == pytest.approx(fp8_official / bf16_official)  # 0.9375
    assert fp8.official_gap_pp == pytest.approx((fp8_official - bf16_official) * 100)  # -4.17 pp
    assert fp8.per_question_relative == pytest.approx(fp8_mean / bf16_mean)  # 0.8636
    assert fp8.per_question_gap_pp == pytest.approx((fp8_mean - bf16_mean) * 100)  # -9.375 pp
    by_fp8 = {
        r.model: r
        for r in relative_table(summarize(fixture_judgments(), fixture_questions()), "fp8")
    }
    assert by_fp8["bf16"].official_relative == pytest.approx(bf16_official / fp8_official)  # 1.0667


def test_relative_table_with_unknown_reference_lists_the_models():
    summaries = summarize(fixture_judgments())
    with pytest.raises(KeyError) as caught:
        relative_table(summaries, reference="nvfp4")
    assert str(caught.value) == "reference model 'nvfp4' not found; models present: 'bf16', 'fp8'"


# ---------------------------------------------------------------- write_jsonl


def test_write_jsonl_replaces_atomically_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n", encoding="utf-8")
    assert write_jsonl(path, [{"a": 1}, {"b": "é"}]) == 2
    assert read_jsonl(path) == [(1, {"a": 1}), (2, {"b": "é"})]
    with pytest.raises(TypeError):
        write_jsonl(
            path, [{"a": 2}, {"b": {1, 2}}]
        )  # a set does not serialise: nothing is replaced
    assert read_jsonl(path) == [(1, {"a": 1}), (2, {"b": "é"})]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_write_jsonl_failing_to_replace_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def fail_replace(source, target):
        assert (
            Path(source).parent == tmp_path and Path(source).read_text() == '{"a": 2}\n'
        )  # same folder, complete
        raise OSError("disk full")

    monkeypatch.setattr("quantgate.jsonl.os.replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl(path, [{"a": 2}])
    assert read_jsonl(path) == [(1, {"a": 1})]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
