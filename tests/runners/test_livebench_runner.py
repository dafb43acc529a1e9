"""quantgate's LiveBench runner on fixture data, without LiveBench: question loading and the
release filter, the answer files, the judgment loop with our own scorers, eval_error, re-runs.

The tiny fixture (tests/fixtures/livebench/tiny/live_bench) holds 86 questions built from the
tiny model's own: per task, question i is released on 2024-07-26 / 2024-08-31 / 2024-11-25
(i mod 3) and question 1 is removed on 2025-04-02; arith_sum and opposites add one question
released 2025-04-25 and two released 2024-07-26 but removed on 2024-08-31.
"""

from __future__ import annotations

import datetime
import json
import sys
import types

import pytest

from quantgate.jsonl import read_jsonl
from quantgate.runners.livebench import (
    LiveBenchError,
    LiveBenchEvalError,
    in_release,
    load_questions,
    run_livebench,
)
from quantgate.runners.livebench.answers import model_name, request_params, tree_dir
from quantgate.runners.livebench.judge import answer_text, judge, write_judgments
from quantgate.runs import PendingEndpoint
from quantgate.scoring.livebench import read_judgments, summarize
from quantgate.suites import load_suite
from quantgate.tasks.scoring import livebench_tiny_score
from tests.support import LIVEBENCH_FIXTURES, tiny_reply, write_suite

TINY = LIVEBENCH_FIXTURES / "tiny"
SIZES = {"arith_sum": 24, "arith_product": 12, "opposites": 20, "plurals": 12, "calendar": 12}


def _count_by_task(questions):
    counts = {}
    for q in questions:
        counts[q["task"]] = counts.get(q["task"], 0) + 1
    return counts


# --- questions and the release filter ------------------------------------------------------------


def test_the_release_keeps_questions_released_by_then_and_not_removed_by_then():
    assert _count_by_task(load_questions("2024-11-25", questions_dir=TINY)) == SIZES
    # 2024-07-26: i mod 3 == 0 of each task, plus the four removed only on 2024-08-31
    assert len(load_questions("2024-07-26", questions_dir=TINY)) == 8 + 4 + 7 + 4 + 4 + 4
    # 2025-04-25: the two new ones join, the five removed on 2025-04-02 leave
    assert len(load_questions("2025-04-25", questions_dir=TINY)) == 80 + 2 - 5


def test_release_edges_follow_livebench():
    def q(released, removed=""):
        return {"livebench_release_date": released, "livebench_removal_date": removed}

    kept = in_release(
        [
            q("2024-11-25"),
            q("2024-11-26"),
            q("2024-06-24", "2024-11-25"),
            q("2024-06-24", "2024-11-26"),
            q("2024-06-24", None),
        ],
        "2024-11-25",
    )
    assert kept == [q("2024-11-25"), q("2024-06-24", "2024-11-26"), q("2024-06-24", None)]


def test_category_and_task_filters_and_either_folder_level():
    math = load_questions("2024-11-25", questions_dir=TINY / "live_bench", categories=["math"])
    assert _count_by_task(math) == {"arith_sum": 24, "arith_product": 12}
    plurals = load_questions("2024-11-25", questions_dir=TINY, tasks=["plurals", "calendar"])
    assert {q["category"] for q in plurals} == {"language", "reasoning"} and len(plurals) == 24


def test_bad_question_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(LiveBenchError, match="no <category>/<task>/question.jsonl under"):
        load_questions("2024-11-25", questions_dir=tmp_path)
    folder = tmp_path / "live_bench" / "math" / "t"
    folder.mkdir(parents=True)
    row = json.dumps(
        {
            "question_id": "q1",
            "category": "math",
            "task": "t",
            "livebench_release_date": "2024-06-24",
            "livebench_removal_date": "",
        }
    )
    (folder / "question.jsonl").write_text(row + "\n" + row + "\n")
    with pytest.raises(LiveBenchError, match=r"duplicate question_id .*'q1'"):
        load_questions("2024-11-25", questions_dir=tmp_path)


# --- generation and the answer files --------------------------------------------------------------


def test_answers_are_written_in_livebench_format(tmp_path, chat_server):
    server = chat_server(tiny_reply)
    suite = load_suite(write_suite(tmp_path, categories=["reasoning"]))
    run = run_livebench(
        "livebench",
        suite,
        "bf16",
        server.endpoint(),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
    )
    assert run.n == 12 and run.mean == 1.0 and len(server.bodies) == 12
    assert server.bodies[0]["messages"] == [
        {"role": "user", "content": server.bodies[0]["messages"][0]["content"]}
    ]
    assert {k: server.bodies[0][k] for k in ("temperature", "max_tokens", "seed")} == {
        "temperature": 0.0,
        "max_tokens": 32,
        "seed": 7,
    }
    tree = tree_dir(tmp_path / "cache", suite, "livebench", "bf16", server.endpoint().answerer())
    data = tree / "data" / "live_bench"
    rows = [
        r for _, r in read_jsonl(data / "reasoning" / "calendar" / "model_answer" / "lb-bf16.jsonl")
    ]
    assert [r["question_id"] for r in rows] == sorted(run.scores)
    first = rows[0]
    assert set(first) >= {
        "question_id",
        "answer_id",
        "model_id",
        "choices",
        "tstamp",
        "total_output_tokens",
        "api_info",
    }
    assert first["model_id"] == "lb-bf16" and first["choices"][0]["index"] == 0
    assert first["choices"][0]["turns"][-1] in {
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    }
    assert first["api_info"]["api_kwargs"] == {"temperature": 0.0, "max_tokens": 32, "seed": 7}
    # the questions sit beside the answers and judgments, as LiveBench's data/ does
    assert len(read_jsonl(data / "reasoning" / "calendar" / "question.jsonl")) == 12


def test_request_parameters_honour_the_question_and_the_task():
    suite = load_suite(LIVEBENCH_FIXTURES.parents[1] / "accuracy" / "suites" / "tiny.yaml")
    assert request_params(suite, "livebench", {}) == {
        "temperature": 0.0,
        "max_tokens": 16,
        "seed": 1234,
    }
    assert request_params(suite, "livebench", {"required_temperature": 0.7})["temperature"] == 0.7


# --- the judgment loop ----------------------------------------------------------------------------


def _answer(text: str) -> dict:
    return {"question_id": "x", "answer_id": "a1", "choices": [{"index": 0, "turns": [text]}]}


def test_the_loop_dedupes_labels_from_the_questions_and_records_scorer_failures():
    q1 = {"question_id": "q1", "category": "instruction_following", "task": "paraphrase"}
    q2 = {"question_id": "q2", "category": "instruction_following", "task": "simplify"}
    q3 = {"question_id": "q3", "category": "math", "task": "t", "subtask": "amc12"}
    seen = []

    def scorer(question, text):
        seen.append((question["question_id"], text))
        return {"q1": 1, "q2": 0.25, "q3": 7}[question["question_id"]]

    answers = {
        "q1": _answer("<think>hmm</think>yes"),
        "q2": _answer("plain"),
        "q3": _answer("<think>cut off"),
    }
    rows = judge([q1, q2, dict(q1), q3], answers, scorer, model="m")  # q1 twice: judged once
    assert seen == [("q1", "yes"), ("q2", "plain"), ("q3", "")]
    assert [(r["question_id"], r["task"], r["category"], r["score"]) for r in rows] == [
        ("q1", "paraphrase", "instruction_following", 1),
        ("q2", "simplify", "instruction_following", 0.25),
        ("q3", "t", "math", 0),
    ]
    assert rows[2]["eval_status"] == "eval_error" and rows[2]["subtask"] == "amc12"
    assert rows[2]["error_msg"] == "ValueError: the scorer returned 7; expected a number in [0, 1]"
    assert "eval_status" not in rows[0] and rows[0]["answer_id"] == "a1"


def test_a_scorer_exception_is_an_eval_error_row_with_its_message():
    def scorer(question, text):
        raise ImportError("lxml not found, please install it")

    (row,) = judge(
        [{"question_id": "q", "category": "c", "task": "t"}], {"q": _answer("a")}, scorer, model="m"
    )
    assert row["score"] == 0 and row["eval_status"] == "eval_error"
    assert row["error_msg"] == "ImportError: lxml not found, please install it"


def test_judgment_files_per_task_keep_other_models_and_aggregate_officially(tmp_path):
    questions = [
        {
            "question_id": f"q{i}",
            "category": "c1" if i < 4 else "c2",
            "task": "big" if i < 3 else ("small" if i == 3 else "other"),
        }
        for i in range(6)
    ]
    answers = {
        q["question_id"]: _answer("1" if q["question_id"] in ("q0", "q3", "q4") else "0")
        for q in questions
    }
    score = lambda q, text: float(text == "1")  # noqa: E731
    write_judgments(judge(questions, answers, score, model="a"), tmp_path)
    paths = write_judgments(judge(questions, answers, lambda q, t: 1.0, model="b"), tmp_path)
    paths = write_judgments(judge(questions, answers, score, model="a"), tmp_path)  # a re-judge
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        f"{c}/{t}/model_judgment/ground_truth_judgment.jsonl"
        for c, t in (("c1", "big"), ("c1", "small"), ("c2", "other"))
    ]
    rows = [r for _, r in read_jsonl(paths[0])]
    assert [(r["question_id"], r["model"]) for r in rows] == [
        (q, m) for q in ("q0", "q1", "q2") for m in ("a", "b")
    ]
    summary = summarize([j for p in paths for j in read_judgments(p)], questions)["a"]
    # c1: big 1/3, small 1 -> official 2/3; c2: 1/2; overall (2/3 + 1/2) / 2; per question 3/6
    assert summary.official == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert summary.per_question_mean == pytest.approx(0.5)
    assert summary.categories["c1"].n == 4


def test_the_fixture_scorer():
    assert livebench_tiny_score({"ground_truth": "15"}, "The answer is 15.") == 1.0
    assert livebench_tiny_score({"ground_truth": "15"}, "The answer is 16.") == 0.0
    assert livebench_tiny_score({"ground_truth": "mice"}, "Mice.") == 1.0
    assert livebench_tiny_score({"ground_truth": "mice"}, "mouses") == 0.0
    assert answer_text(_answer("<think>\n\n</think>\n\nThe answer is 3.")) == "The answer is 3."


# --- the run: eval_error, the official numbers, re-runs -------------------------------------------


def test_eval_errors_fail_the_run_with_their_messages_and_are_written(tmp_path, chat_server):
    server = chat_server(tiny_reply)
    suite = load_suite(write_suite(tmp_path, tasks=["plurals"]))

    def scorer(question, text):
        if text == "buses":
            raise KeyError("no rule for buses")
        return 1.0

    with pytest.raises(
        LiveBenchEvalError,
        match=r"(?s)1 of 12 LiveBench judgments are "
        r"eval_error.*language/plurals \w+: KeyError: "
        r"'no rule for buses'",
    ):
        run_livebench(
            "livebench",
            suite,
            "bf16",
            server.endpoint(),
            out_dir=tmp_path / "out",
            cache_dir=tmp_path / "cache",
            scorer=scorer,
        )
    tree = tree_dir(tmp_path / "cache", suite, "livebench", "bf16", server.endpoint().answerer())
    data = tree / "data" / "live_bench"
    (error,) = [
        j
        for j in read_judgments(
            data / "language" / "plurals" / "model_judgment" / "ground_truth_judgment.jsonl"
        )
        if j.is_eval_error
    ]
    assert error.error == "KeyError: 'no rule for buses'" and error.score == 0


def test_a_rerun_with_answers_present_only_judges(tmp_path, chat_server):
    server = chat_server(tiny_reply)
    suite = load_suite(write_suite(tmp_path, categories=["math", "reasoning"]))
    kwargs = {"out_dir": tmp_path / "out", "cache_dir": tmp_path / "cache"}
    first = run_livebench("livebench", suite, "bf16", server.endpoint(), **kwargs)
    assert len(server.bodies) == 48 and first.mean == 1.0
    stats = first.provenance["livebench"]
    assert stats["n"] == 48 and stats["official"] == stats["per_question_mean"] == 1.0
    assert stats["categories"]["math"] == {"official": 1.0, "mean": 1.0, "n": 36}

    def no_server():
        raise AssertionError("a re-run with every answer present must not need a server")

    # another scorer re-judges the stored answers: no request, no server
    odd = lambda q, text: float(q["task"] != "arith_product")  # noqa: E731
    pending = PendingEndpoint(server.endpoint().answerer(), no_server)
    again = run_livebench("livebench", suite, "bf16", pending, scorer=odd, **kwargs)
    assert len(server.bodies) == 48 and set(again.scores) == set(first.scores)
    stats = again.provenance["livebench"]
    assert stats["per_question_mean"] == pytest.approx(36 / 48)
    assert stats["official"] == pytest.approx((0.5 + 1.0) / 2)  # math: (1 + 0) / 2
    assert stats["categories"]["math"] == {"official": 0.5, "mean": pytest.approx(24 / 36), "n": 36}
    assert again.provenance["engine"] == "external"  # from the stored answers
    # a lost answer comes back from the request cache; without that cache, one request is sent
    tree = tree_dir(tmp_path / "cache", suite, "livebench", "bf16", server.endpoint().answerer())
    answers = (
        tree
        / "data"
        / "live_bench"
        / "reasoning"
        / "calendar"
        / "model_answer"
        / f"{model_name(suite, 'bf16')}.jsonl"
    )
    for sent in (48, 49):
        answers.write_text("\n".join(answers.read_text().splitlines()[1:]) + "\n")
        run_livebench("livebench", suite, "bf16", server.endpoint, **kwargs)
        assert len(server.bodies) == sent and len(answers.read_text().splitlines()) == 12
        (tree / "requests.sqlite").unlink()


def test_another_precision_or_generation_setting_is_another_cache(tmp_path):
    suite = load_suite(write_suite(tmp_path))
    other = load_suite(write_suite(tmp_path, name="lb2", gen_kwargs={"max_gen_toks": 8}))
    paths = {
        tree_dir(tmp_path, suite, "livebench", "bf16"),
        tree_dir(tmp_path, suite, "livebench", "fp8"),
        tree_dir(tmp_path / "lb", other, "livebench", "bf16"),
    }
    assert len(paths) == 3
    assert tree_dir(tmp_path, suite, "livebench", "bf16").parts[-3:-1] == ("bf16", "2024-11-25")


def test_a_limit_takes_the_first_questions(tmp_path, chat_server):
    server = chat_server(tiny_reply)
    suite = load_suite(write_suite(tmp_path, tasks=["opposites"]))
    run = run_livebench(
        "livebench",
        suite,
        "bf16",
        server.endpoint(),
        out_dir=tmp_path / "o",
        cache_dir=tmp_path / "c",
        limit=5,
    )
    assert run.n == 5 and len(server.bodies) == 5 and run.provenance["limit"] == 5


def test_hub_questions_come_from_livebenchs_datasets_with_dates_as_text(monkeypatch):
    asked = []

    def load_dataset(name, split):
        asked.append((name, split))
        day = datetime.datetime(2024, 11, 25)
        return [
            {
                "question_id": f"{name}-1",
                "category": name.split("/")[1],
                "task": "t",
                "livebench_release_date": day,
                "livebench_removal_date": "",
                "original_json": {"contest_date": datetime.datetime(2024, 10, 1, 14, 30)},
            }
        ]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    rows = load_questions("2024-11-25", categories=["math", "coding"])
    assert asked == [("livebench/math", "test"), ("livebench/coding", "test")]
    assert rows[1]["livebench_release_date"] == "2024-11-25"
    assert rows[1]["original_json"] == {"contest_date": "2024-10-01 14:30:00"}
    assert len(load_questions("2024-11-25")) == 6  # all six categories by default
