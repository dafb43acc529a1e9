"""``quantgate livebench-summary`` on the LiveBench-shaped fixture, and the report tables it prints.

Fixture numbers (see test_livebench.py): with --questions, official bf16 (0.5 + 0.5 + 1) / 3 = 66.7,
fp8 (0.375 + 0.5 + 1) / 3 = 62.5; per-question bf16 5.5 / 8 = 68.8, fp8 4.75 / 8 = 59.4.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantgate.__main__ import main
from quantgate.jsonl import read_jsonl, write_jsonl
from quantgate.report import format_table, percent

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "livebench" / "data" / "live_bench"
MATH_JUDGMENTS = Path("math", "math_comp", "model_judgment", "ground_truth_judgment.jsonl")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["livebench-summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def has_line(text: str, *cells: str) -> bool:
    """True if some line holds exactly these cells, separated by runs of spaces."""
    pattern = r"^" + r"\s+".join(re.escape(cell) for cell in cells) + r"$"
    return re.search(pattern, text, flags=re.MULTILINE) is not None


@pytest.fixture
def tree(tmp_path) -> Path:
    """A writable copy of the fixture's data/live_bench folder."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "live_bench"))


def test_summary_of_the_fixture_folder_prints_the_tables_and_writes_json(capsys, tmp_path):
    out_json = tmp_path / "summary.json"
    code, out, err = run(
        capsys, "--judgments", str(FIXTURE), "--questions", str(FIXTURE), "--json", str(out_json)
    )
    assert (code, err) == (0, "")
    assert "17 judgment rows from 4 file(s), 8 questions from 4 file(s)" in out
    assert has_line(out, "bf16", "66.7", "68.8", "8") and has_line(out, "fp8", "62.5", "59.4", "8")
    assert has_line(
        out, "fp8", "0", "1", "3", "0", "0", "0"
    )  # health: 1 duplicate, 3 IF rows relabeled
    assert has_line(
        out, "fp8", "official", "62.5", "93.8%", "-4.2 pp"
    )  # 0.625 / 0.6667; (0.625 - 0.6667) x 100
    assert has_line(out, "fp8", "per-question", "59.4", "86.4%", "-9.4 pp")  # 0.59375 / 0.6875
    assert has_line(out, "bf16", "official", "66.7", "100.0%", "+0.0 pp")
    assert has_line(
        out, "fp8", "instruction_following", "37.5", "43.8", "4"
    )  # (0.5 + 0.25) / 2; 1.75 / 4
    assert "note:" not in out
    payload = json.loads(out_json.read_text())
    assert payload["reference"] == "bf16"
    assert payload["models"]["fp8"]["official"] == pytest.approx((0.375 + 0.5 + 1.0) / 3)
    assert payload["models"]["bf16"]["categories"]["instruction_following"] == {
        "official": 0.5,
        "mean": 0.625,
        "n": 4,
    }
    assert payload["models"]["bf16"]["tasks"]["paraphrase"] == {
        "official": 0.75,
        "mean": 0.75,
        "n": 3,
    }
    relative = {row["model"]: row for row in payload["relative"]}
    assert relative["fp8"]["per_question_gap_pp"] == pytest.approx((4.75 - 5.5) / 8 * 100)
    assert len(payload["judgment_files"]) == 4 and len(payload["question_files"]) == 4


def test_without_questions_the_judgment_labels_are_used_and_a_note_says_so(capsys):
    code, out, _ = run(capsys, "--judgments", str(FIXTURE))
    assert code == 0
    assert "note: no --questions" in out
    assert has_line(
        out, "bf16", "70.8", "68.8", "8"
    )  # (0.625 + 0.5 + 1) / 3: IF rows all labelled "simplify"


def test_explicit_reference(capsys):
    code, out, _ = run(
        capsys, "--judgments", str(FIXTURE), "--questions", str(FIXTURE), "--reference", "fp8"
    )
    assert code == 0
    assert "Relative to fp8 (fp8 = 100%)" in out
    assert has_line(out, "bf16", "official", "66.7", "106.7%", "+4.2 pp")  # 0.6667 / 0.625


def test_no_bf16_and_no_reference_skips_the_relative_table(capsys, tmp_path):
    rows = [
        obj
        for path in sorted(FIXTURE.rglob("ground_truth_judgment.jsonl"))
        for _, obj in read_jsonl(path)
    ]
    write_jsonl(
        tmp_path / "ground_truth_judgment.jsonl",
        [{**row, "model": "base" if row["model"] == "bf16" else row["model"]} for row in rows],
    )
    code, out, _ = run(capsys, "--judgments", str(tmp_path), "--questions", str(FIXTURE))
    assert code == 0
    assert "note: no model named 'bf16' and no --reference: relative table skipped" in out
    assert "Relative to" not in out
    assert has_line(out, "base", "66.7", "68.8", "8")


def test_unknown_explicit_reference_exits_2(capsys):
    code, out, err = run(capsys, "--judgments", str(FIXTURE), "--reference", "nvfp4")
    assert (code, out) == (2, "")
    assert err == (
        "quantgate livebench-summary: error: --reference 'nvfp4' is not among the models: "
        "'bf16', 'fp8'\n"
    )


def test_eval_error_rows_are_printed_and_exit_1(capsys, tree, tmp_path):
    error = "ImportError: Missing optional dependency 'lxml'."
    with open(tree / MATH_JUDGMENTS, "a", encoding="utf-8") as handle:
        handle.write(
            json.dumps(
                {
                    "question_id": "6c18b65d47e3ea2947e723f72451cf70"
                    "a0f4b8ef493062929eb84a6c6172a9fa",
                    "task": "math_comp",
                    "model": "fp8",
                    "score": 0,
                    "tstamp": 1733106000.0,
                    "category": "math",
                    "eval_status": "eval_error",
                    "error_msg": error,
                }
            )
            + "\n"
        )
    out_json = tmp_path / "summary.json"
    code, out, _ = run(
        capsys, "--judgments", str(tree), "--questions", str(tree), "--json", str(out_json)
    )
    assert code == 1
    assert "1 eval_error row(s)" in out
    assert has_line(
        out,
        "fp8",
        "6c18b65d47e3ea2947e723f72451cf70a0f4b8ef493062929eb84a6c6172a9fa",
        "math_comp",
        "ImportError:",
        "Missing",
        "optional",
        "dependency",
        "'lxml'.",
        f"{tree / MATH_JUDGMENTS}:7",
    )
    assert has_line(
        out, "fp8", "45.8", "46.9", "8"
    )  # math now (0 + 0) / 2: (0.375 + 0 + 1) / 3; 3.75 / 8
    assert json.loads(out_json.read_text())["models"]["fp8"]["eval_errors"][0]["error"] == error


def test_malformed_judgment_file_exits_2_with_file_and_line(capsys, tree):
    with open(tree / MATH_JUDGMENTS, "a", encoding="utf-8") as handle:
        handle.write('{"question_id": "6c18", "score": 1\n')
    code, out, err = run(capsys, "--judgments", str(tree))
    assert (code, out) == (2, "")
    assert err.startswith(
        f"quantgate livebench-summary: error: {tree / MATH_JUDGMENTS}:7: malformed JSON: "
    )
    assert "Traceback" not in err


def test_ill_typed_question_exits_2(capsys, tree):
    question_file = tree / "math" / "math_comp" / "question.jsonl"
    question_file.write_text(
        question_file.read_text()
        + json.dumps({"question_id": 7, "task": "math_comp", "category": "math"})
        + "\n"
    )
    code, _, err = run(capsys, "--judgments", str(tree), "--questions", str(tree))
    assert code == 2
    assert (
        f"{question_file}:3: field 'question_id': found 7 (int), expected a non-empty string" in err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judgments", "no/such/folder"], "--judgments: no/such/folder does not exist"),
        (
            ["--judgments", str(FIXTURE), "--questions", str(FIXTURE / MATH_JUDGMENTS.parent)],
            "--questions: no question.jsonl under",
        ),
        (
            ["--judgments", str(FIXTURE / "math" / "math_comp" / "question.jsonl")],
            "field 'model': found nothing (field missing)",
        ),
    ],
)
def test_bad_paths_exit_2(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err


def test_usage_errors_return_2_instead_of_exiting(capsys):
    assert main(["livebench-summary"]) == 2  # --judgments is required
    assert main([]) == 2  # no command
    assert "--judgments" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "quantgate", "livebench-summary", "--judgments", str(FIXTURE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Overall" in result.stdout and "Per category" in result.stdout


# ---------------------------------------------------------------- quantgate.report


def test_format_table_right_aligns_numbers_and_left_aligns_text():
    table = format_table(
        ["model", "score", "gap", "N"],
        [["bf16", "66.7", "+0.0 pp", 8], ["nvfp4", "9.5", "-57.2 pp", 12], ["fp8", None, "-", 8]],
    )
    assert table.splitlines() == [
        "model  score       gap   N",
        "-----  -----  --------  --",
        "bf16    66.7   +0.0 pp   8",
        "nvfp4    9.5  -57.2 pp  12",
        "fp8                  -   8",
    ]


def test_format_table_explicit_alignment_and_errors():
    assert format_table(["a", "b"], [["x", "1"]], align=["right", "<"]).splitlines() == [
        "a  b",
        "-  -",
        "x  1",
    ]
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        format_table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="unknown alignment 'middle'"):
        format_table(["a"], [["x"]], align=["middle"])


def test_percent():
    assert (percent(0.9375), percent(1 / 3, 2), percent(-0.0417, sign=True), percent(None)) == (
        "93.8%",
        "33.33%",
        "-4.2%",
        "-",
    )


def test_svg_draws_each_model_relative_to_the_reference(capsys, tmp_path):
    import xml.etree.ElementTree as ET

    out_svg = tmp_path / "relative_bar.svg"
    code, out, err = run(
        capsys, "--judgments", str(FIXTURE), "--questions", str(FIXTURE), "--svg", str(out_svg)
    )
    assert (code, err) == (0, "") and f"wrote {out_svg}" in out
    text = out_svg.read_text()
    ET.fromstring(text)
    # the bars' labels: fp8 official 93.8 % and per-question 86.4 % of bf16, bf16 at 100
    for label in ("93.8", "86.4", "100.0", "fp8", "bf16"):
        assert f"<!-- {label} -->" in text, label
    again = tmp_path / "again.svg"
    run(capsys, "--judgments", str(FIXTURE), "--questions", str(FIXTURE), "--svg", str(again))
    assert again.read_text() == text  # deterministic
