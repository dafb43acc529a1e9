"""LiveBench's own scorers, from an installed ``livebench`` package, on fixture questions.

tests/fixtures/livebench/real: instruction following (the 2024-11-25 IFEval path that crashes
upstream on ``set()`` over question dicts), math_comp, zebra_puzzle and tablereformat to HTML
(``pandas.read_html``: lxml), with hand-written answers and the scores LiveBench gives them
(answers.jsonl). The chain is the runner's own: a chat server answers, the answer files are
written, our loop judges with LiveBench's scorers, and LiveBench's ``show_livebench_result.py``
reads the judgments. Skipped where ``livebench`` is not importable.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from quantgate.jsonl import read_jsonl
from quantgate.runners.livebench import (
    INSTALL,
    LiveBenchEvalError,
    livebench_installed,
    run_livebench,
)
from quantgate.runners.livebench.answers import tree_dir
from quantgate.suites import load_suite
from tests.support import LIVEBENCH_FIXTURES, write_suite

pytestmark = pytest.mark.skipif(
    not livebench_installed(), reason=f"livebench is not installed: {INSTALL}"
)
REAL = LIVEBENCH_FIXTURES / "real"


def _answers() -> list[dict]:
    return [row for _, row in read_jsonl(REAL / "answers.jsonl")]


def _serve(chat_server, questions_dir):
    by_prompt = {}
    for path in questions_dir.rglob("question.jsonl"):
        for _, q in read_jsonl(path):
            by_prompt[q["turns"][0]] = q["question_id"]
    answers = {a["question_id"]: a["answer"] for a in _answers()}
    return chat_server(lambda text: answers.get(by_prompt.get(text), "no answer"))


def test_livebench_scorers_judge_the_fixture_and_show_livebench_result_reads_it(
    tmp_path, chat_server
):
    questions = tmp_path / "questions"
    shutil.copytree(REAL / "live_bench", questions / "live_bench")
    suite = load_suite(write_suite(tmp_path, scorer=None, questions_dir=str(questions)))
    server = _serve(chat_server, questions)
    run = run_livebench(
        "livebench",
        suite,
        "bf16",
        server.endpoint(),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
    )
    expected = {a["question_id"]: float(a["expected"]) for a in _answers()}
    assert run.scores == expected
    assert run.provenance["scorer"] == "livebench" and run.provenance["livebench_version"]
    stats = run.provenance["livebench"]
    # tasks: paraphrase 0.75, simplify 1, math_comp 0.5, zebra 0.5, tablereformat 0.5
    assert stats["categories"]["instruction_following"] == {
        "official": pytest.approx(0.875),
        "mean": pytest.approx(3.25 / 4),
        "n": 4,
    }
    assert stats["official"] == pytest.approx((0.875 + 0.5 + 0.5 + 0.5) / 4)
    assert stats["per_question_mean"] == pytest.approx(6.25 / 10)

    tree = tree_dir(tmp_path / "cache", suite, "livebench", "bf16", server.endpoint().answerer())
    judgments = [
        r for p in (tree / "data").rglob("ground_truth_judgment.jsonl") for _, r in read_jsonl(p)
    ]
    assert sorted({(r["category"], r["task"]) for r in judgments}) == [
        ("data_analysis", "tablereformat"),
        ("instruction_following", "paraphrase"),
        ("instruction_following", "simplify"),
        ("math", "math_comp"),
        ("reasoning", "zebra_puzzle"),
    ]  # upstream labels all four IF rows with one task
    assert not [r for r in judgments if r.get("eval_status")]

    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "livebench.show_livebench_result",
            "--bench-name",
            "live_bench",
            "--question-source",
            "jsonl",
            "--livebench-release-option",
            "2024-11-25",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    with open(tree / "all_groups.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["model"] == "lb-bf16"
    assert float(row["average"]) == pytest.approx(round(stats["official"] * 100, 1))
    assert float(row["instruction_following"]) == pytest.approx(87.5)


def test_a_livebench_scorer_exception_fails_the_case_with_its_message(tmp_path, chat_server):
    (question,) = [
        q
        for _, q in read_jsonl(
            REAL / "live_bench" / "data_analysis" / "tablereformat" / "question.jsonl"
        )
    ][:1]
    folder = tmp_path / "questions" / "live_bench" / "data_analysis" / "tablereformat"
    folder.mkdir(parents=True)
    broken = {**question, "ground_truth": "not a table at all"}
    (folder / "question.jsonl").write_text(json.dumps(broken) + "\n")
    suite = load_suite(
        write_suite(tmp_path, scorer=None, questions_dir=str(tmp_path / "questions"))
    )
    server = chat_server(lambda text: "<table><tr><td>1</td></tr></table>")
    # pandas.read_html finds no table: ValueError, or (lxml found none and falls back to bs4)
    # ImportError when html5lib is absent -- either way an eval_error row, never a silent 0
    with pytest.raises(
        LiveBenchEvalError, match=r"(?s)1 of 1 .*tablereformat \w+: (ValueError|ImportError): "
    ):
        run_livebench(
            "livebench",
            suite,
            "bf16",
            server.endpoint(),
            out_dir=tmp_path / "out",
            cache_dir=tmp_path / "cache",
        )
