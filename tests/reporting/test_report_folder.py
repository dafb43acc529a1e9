"""The report folder (issue 13): report.md, report.json (valid against its schema), relative.svg
and flips.svg from a session's rows; rebuilt without a server from stored runs and baselines
(``python -m quantgate report``); deterministic pictures; the documented schema is the model's."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import yaml

from quantgate.__main__ import main
from quantgate.baselines import Baseline, baseline_path, identity
from quantgate.cases import Case
from quantgate.decision import decide_case, decide_suite
from quantgate.report import ROW_KEYS, THROUGHPUT_ROW, VERDICT_ROW, throughput_record
from quantgate.reporting import build_report, load_report, report_folder, write_report
from quantgate.reporting.build import store_throughput
from quantgate.reporting.schema import Report
from quantgate.runners.registry import RUN_FILE, run_dir
from quantgate.runs import TaskRun
from quantgate.serving.throughput import ThroughputResult
from quantgate.suites import load_suite

REPO = Path(__file__).resolve().parents[2]
N = 100
REF = {str(i): float(i % 4 != 0) for i in range(N)}  # 75 % right
FP8 = {**REF, "1": 0.0, "4": 1.0}  # one flip each way
INT2 = {k: 0.0 for k in REF}
NOW = datetime(2026, 12, 1, 21, 0, 0, tzinfo=UTC)


def make_suite(folder: Path):
    spec = {
        "model": "m",
        "precisions": {
            "bf16": {"checkpoint": "org/m"},
            "fp8": {"checkpoint": "org/m-fp8"},
            "int2": {"checkpoint": "org/m-int2", "expect": "fail"},
        },
        "tasks": {
            name: {
                "runner": "lmeval",
                "lmeval_task": "x",
                "metric": "acc,none",
                "gate": {"method": "paired", "margin": 0.05},
            }
            for name in ("alpha", "beta")
        },
    }
    path = folder / "suites" / "s.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(spec))
    return load_suite(path)


SESSION = "20261201T200000Z-4242"


def session(tmp_path):
    """The rows of a session over stored runs, as the plugin records them: bf16 (stored as the
    reference), fp8, int2, each with its task cases (run.json written where run_case writes
    it), a suite verdict for each candidate and a throughput case (its row stored where the
    plugin stores it); the server logs of this session and of an earlier one."""
    suite = make_suite(tmp_path)
    root, baselines = tmp_path / "qg", tmp_path / "baselines"
    rows: dict[str, list[dict]] = {key: [] for key in ROW_KEYS}
    for task in suite.tasks:
        path = baseline_path(baselines, "s", task, "bf16")
        path.parent.mkdir(parents=True)
        ref_run = TaskRun(task, "bf16", dict(REF))
        path.write_text(Baseline.from_run(ref_run, identity(suite, task, "bf16")).to_json())
    for precision, scores in (("bf16", REF), ("fp8", FP8), ("int2", INT2)):
        verdicts = {}
        for task in suite.tasks:
            folder = run_dir(root, "s", precision, task)
            run = TaskRun(
                task,
                precision,
                dict(scores),
                provenance={"engine": "transformers"},
                samples_path=folder / "samples.jsonl",
            )
            folder.mkdir(parents=True)
            (folder / RUN_FILE).write_text(run.to_json())
            decision = decide_case(Case("s", task, precision), run, suite, baselines_root=baselines)
            for key, record in decision.rows:
                rows[key].append(record)
            if decision.verdict is not None:
                verdicts[task] = decision.verdict
        if precision != "bf16":
            for key, record in decide_suite(Case("s", "all", precision), suite, verdicts).rows:
                rows[key].append(record)
        speed = ThroughputResult(16, 2, 32, 4.0 if precision == "bf16" else 2.0, 512)
        record = throughput_record("s", precision, "bf16", speed)
        rows[THROUGHPUT_ROW].append(record)
        store_throughput(root, record)
        for name in ("20261130T100000Z-77", SESSION):  # an earlier session's, then this one's
            (run_dir(root, "s", precision, "alpha").parent / f"server-{name}.log").touch()
    return suite, root, baselines, rows


def session_logs(root):
    return sorted(root.glob(f"runs/*/*/server-{SESSION}.log"))


def test_a_session_writes_the_four_files_with_its_numbers(tmp_path):
    suite, root, baselines, rows = session(tmp_path)
    report = build_report(
        rows, {"s": suite}, quantgate_dir=root, baselines_dir=baselines, created=NOW
    )
    folder = write_report(report, report_folder(root, now=NOW))
    assert folder == root / "reports" / "20261201T210000Z"
    assert sorted(p.name for p in folder.iterdir()) == [
        "flips.svg",
        "relative.svg",
        "report.json",
        "report.md",
    ]
    assert (root / "reports" / "latest").resolve() == folder.resolve()
    again = load_report(folder)  # valid against the schema
    assert again == report and again.schema_version == 1
    by = {(t.task, t.precision): t for t in again.tasks}
    assert [t.precision for t in again.tasks if t.task == "alpha"] == ["bf16", "fp8", "int2"]
    assert by["alpha", "bf16"].relative == 1.0 and by["alpha", "bf16"].score == 0.75
    assert (by["alpha", "fp8"].flips_down, by["alpha", "fp8"].flips_up) == (1, 1)
    assert by["alpha", "fp8"].verdict == "pass" and by["alpha", "int2"].verdict == "fail"
    assert by["alpha", "int2"].relative == 0.0
    (setup,) = again.suites
    assert [p.precision for p in setup.precisions] == ["bf16", "fp8", "int2"]
    assert setup.file_sha256 and setup.precisions[1].checkpoint == "org/m-fp8"
    md = (folder / "report.md").read_text()
    assert "| fp8 | 75.0 % | 100.0 % | +0.0 pp |" in md
    assert "| int2 | 0.0 % | 0.0 % | -75.0 pp |" in md and "| fail |" in md
    assert "![each task relative to the reference](relative.svg)" in md
    assert f"baselines: `{baselines}`" in md


def test_the_pictures_are_deterministic_svg_with_every_task_and_precision(tmp_path):
    suite, root, baselines, rows = session(tmp_path)
    report = build_report(rows, {"s": suite}, created=NOW)
    one = write_report(report, tmp_path / "one", ["svg"])
    two = write_report(report, tmp_path / "two", ["svg"])
    for name in ("relative.svg", "flips.svg"):
        text = (one / name).read_text()
        assert text == (two / name).read_text()
        ET.fromstring(text)  # well-formed
        assert "<dc:date>" not in text
        for label in ("s/alpha", "s/beta", "fp8", "int2"):
            assert label in text or label.replace("/", "") in text, (name, label)


def svg_texts(path: Path) -> list[str]:
    """The texts a matplotlib SVG draws (each is kept as a comment before its glyphs)."""
    return [t.strip() for t in re.findall(r"<!-- (.*?) -->", path.read_text())]


def test_the_pictures_show_scores_relative_to_the_reference_and_flips_apart(tmp_path):
    """relative.svg: each candidate's score relative to the reference (an unchanged score is a
    100 % bar, not an invisible 0 pp one) with its gap and verdict beside it, the margin drawn;
    flips.svg: the items lost and gained as two labels, never run together."""
    suite, root, baselines, rows = session(tmp_path)
    folder = write_report(build_report(rows, {"s": suite}, created=NOW), tmp_path / "r", ["svg"])
    relative = svg_texts(folder / "relative.svg")
    assert relative.count("100.0 %   +0.0 pp  PASS  n 100") == 2  # fp8 on alpha and beta
    assert relative.count("0.0 %  -75.0 pp  FAIL  n 100") == 2  # int2
    assert "s/alpha" in relative and "s/beta" in relative
    assert {"score relative to bf16 (%)", "bf16 = 100 %", "paired interval", "−margin"} <= set(
        relative
    )
    flips = svg_texts(folder / "flips.svg")
    assert flips.count("−1") == 2 and flips.count("+1   (n 100)") == 2  # fp8: one each way
    assert flips.count("−75") == 2 and flips.count("+0   (n 100)") == 2  # int2, per task


def test_python_m_quantgate_report_rebuilds_from_stored_runs_without_a_server(tmp_path, capsys):
    suite, root, baselines, rows = session(tmp_path)
    live = build_report(
        rows,
        {"s": suite},
        quantgate_dir=root,
        baselines_dir=baselines,
        server_logs=session_logs(root),
        created=NOW,
    )
    assert live.suite_verdicts and live.throughput and live.artifacts.server_logs
    status = main(
        [
            "report",
            str(root),
            "--suites-dir",
            str(tmp_path / "suites"),
            "--baselines-dir",
            str(baselines),
            "--out",
            str(tmp_path / "rebuilt"),
        ]
    )
    assert status == 0 and f"quantgate report: {tmp_path / 'rebuilt'}" in capsys.readouterr().out
    rebuilt = load_report(tmp_path / "rebuilt")
    # the same report from the stored runs: decisions, suite verdicts, throughput, logs
    assert rebuilt.model_copy(update={"created": live.created}) == live
    assert [(v["precision"], v["outcome"]) for v in rebuilt.suite_verdicts] == [
        ("fp8", "pass"),
        ("int2", "fail"),
    ]
    md = (tmp_path / "rebuilt" / "report.md").read_text()
    assert "## Suite verdicts" in md and "## Throughput" in md and f"server-{SESSION}.log" in md
    # a report folder re-renders from its report.json alone
    (tmp_path / "rebuilt" / "report.md").unlink()
    assert main(["report", str(tmp_path / "rebuilt"), "--format", "md"]) == 0
    assert "### alpha" in (tmp_path / "rebuilt" / "report.md").read_text()


def test_report_errors_name_the_path(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a report folder (report.json) nor a quantgate dir" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"schema_version": 1}')
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path / 'report.json'}: not a quantgate report" in capsys.readouterr().err


def test_the_documented_schema_is_the_models():
    doc = (REPO / "docs" / "report-schema.md").read_text()
    (block,) = re.findall(r"```json\n(.*?)\n```", doc, flags=re.S)
    assert json.loads(block) == Report.model_json_schema(), (
        "docs/report-schema.md is out of date: python scripts/report_schema.py"
    )


def test_without_matplotlib_the_text_report_is_still_written(tmp_path, monkeypatch):
    import importlib.util

    suite, root, baselines, rows = session(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    folder = write_report(build_report(rows, {"s": suite}), tmp_path / "r")
    assert sorted(p.name for p in folder.iterdir()) == ["NO-SVG.txt", "report.json", "report.md"]
    assert "relative.svg" not in (folder / "report.md").read_text()


def test_the_readme_example_is_its_committed_report_rendered(tmp_path):
    """docs/example/ holds a real tiny-suite report.json and the pictures
    scripts/render_example.py draws from it; the README shows relative.svg."""
    import runpy

    example = REPO / "docs" / "example"
    render = runpy.run_path(str(REPO / "scripts" / "render_example.py"))["render"]
    committed_json = (example / "report.json").read_text()
    assert '"/' not in committed_json  # names no one's machine: every path relative
    # a report as a session in this checkout writes it (absolute paths) renders to the example
    source = tmp_path / "source"
    source.mkdir()
    (source / "report.json").write_text(
        committed_json.replace('": ".quantgate/', f'": "{REPO}/.quantgate/')
    )
    assert f'"{REPO}/.quantgate/runs/' in (source / "report.json").read_text()
    render(source, tmp_path)
    assert (tmp_path / "report.json").read_text() == committed_json
    import matplotlib

    for name in ("relative.svg", "flips.svg"):
        hint = f"docs/example/{name} is not its report.json rendered: "
        hint += "python scripts/render_example.py docs/example"
        committed = (example / name).read_text()
        # every text drawn (labels, numbers, verdicts) is the same whatever draws it; the bytes
        # are, too, with the matplotlib that drew the committed file (the SVG names it)
        assert svg_texts(tmp_path / name) == svg_texts(example / name), hint
        if f"Matplotlib v{matplotlib.__version__}," in committed:
            assert (tmp_path / name).read_text() == committed, hint
    assert {s.name for s in load_report(example).suites} == {"tiny"}
    assert "](docs/example/relative.svg)" in (REPO / "README.md").read_text()


def test_a_sequential_run_says_where_it_stopped(tmp_path):
    """A candidate that stopped at an early look (quantgate.sequential): report.json carries the
    look, the looks and the task's items; report.md's n reads "34/100 (look 1/3)"."""
    suite, root, baselines, rows = session(tmp_path)
    (record,) = [
        r for r in rows[VERDICT_ROW] if r["case"] == "s-alpha-int2"
    ]  # as decision.verdict_record writes a sequential run's row
    record.update(n=34, look=1, looks=3, total=N)
    report = build_report(
        rows, {"s": suite}, quantgate_dir=root, baselines_dir=baselines, created=NOW
    )
    folder = write_report(report, report_folder(root, now=NOW), ["md", "json"])
    by = {(t.task, t.precision): t for t in load_report(folder).tasks}
    stopped, whole = by["alpha", "int2"], by["alpha", "fp8"]
    assert (stopped.n, stopped.look, stopped.looks, stopped.total) == (34, 1, 3, N)
    assert (whole.look, whole.looks, whole.total) == (None, None, None)
    write_report(load_report(folder), folder, ["svg"])
    assert "0.0 %  -75.0 pp  FAIL  n 34/100" in svg_texts(folder / "relative.svg")
    assert "+0   (n 34/100)" in svg_texts(folder / "flips.svg")
    md = (folder / "report.md").read_text()
    assert "| 34/100 (look 1/3) | fail |" in md and f"| {N} | pass |" in md


def test_a_damaged_stored_run_or_throughput_row_is_named_not_a_traceback(tmp_path, capsys):
    """Review finding: a torn throughput.json (or run.json) crashed `python -m quantgate report`
    with a raw JSONDecodeError."""
    suite, root, baselines, rows = session(tmp_path)
    argv = ["report", str(root), "--suites-dir", str(tmp_path / "suites")]
    argv += ["--baselines-dir", str(baselines), "--out", str(tmp_path / "rebuilt")]
    (stored,) = root.glob("runs/s/fp8/throughput/*.json")
    stored.write_text('{"suite": "s", "prec')
    assert main(argv) == 2
    assert f"{stored}: not a stored throughput row" in capsys.readouterr().err
    stored.unlink()
    run_json = run_dir(root, "s", "fp8", "alpha") / RUN_FILE
    run_json.write_bytes(b"\xff\xfe")
    assert main(argv) == 2
    assert f"{run_json}: not UTF-8 text" in capsys.readouterr().err


def test_report_json_carries_the_p_values_and_whether_own_history_was_a_new_run(tmp_path):
    """Each gated task: the gate's p-values (for a sequential look, as its row carries them,
    the repeated ones and the look's own); the reference's own-history row says when it
    compared cached answers rather than a new run."""
    suite, root, baselines, rows = session(tmp_path)
    cached = decide_case(
        Case("s", "alpha", "bf16"),
        TaskRun("alpha", "bf16", dict(REF)),
        suite,
        baselines_root=baselines,
        cached=True,
    )
    rows[VERDICT_ROW] = [r for r in rows[VERDICT_ROW] if r["case"] != "s-alpha-bf16"]
    rows[VERDICT_ROW] += [r for k, r in cached.rows if k == VERDICT_ROW]
    (looked,) = [r for r in rows[VERDICT_ROW] if r["case"] == "s-beta-int2"]
    looked.update(look=1, looks=3, total=N, look_p_noninferiority=0.9, look_p_drop=1e-9)
    report = build_report(
        rows, {"s": suite}, quantgate_dir=root, baselines_dir=baselines, created=NOW
    )
    folder = write_report(report, report_folder(root, now=NOW), ["json", "md"])
    by = {(t.task, t.precision): t for t in load_report(folder).tasks}
    assert by["alpha", "bf16"].cached is True and by["beta", "bf16"].cached is False
    md = (folder / "report.md").read_text()  # report.md's verdict reads as the terminal's
    assert md.count("| pass (cached: no new run) |") == 1
    fp8, int2 = by["alpha", "fp8"], by["alpha", "int2"]
    assert 0 <= fp8.p_noninferiority < 0.05 < fp8.p_drop <= 1  # passes: non-inferior, no drop
    assert int2.p_drop < 0.05 and int2.verdict == "fail"
    assert (fp8.look_p_noninferiority, fp8.look_p_drop) == (None, None)  # a fixed design
    assert (by["beta", "int2"].look_p_noninferiority, by["beta", "int2"].look_p_drop) == (0.9, 1e-9)
