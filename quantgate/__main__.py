"""Command line: ``python -m quantgate COMMAND ...`` (also the ``quantgate`` script).

Usage::

    quantgate livebench-summary --judgments data/live_bench --questions data/live_bench --json summary.json
    quantgate report .quantgate                   # rebuild a report from stored runs + baselines
    quantgate report .quantgate/reports/latest    # re-render a report folder from its report.json

Exit status: 0 fine, 1 the data is complete but shows a failure (e.g. eval_error rows), 2 bad usage
or unreadable input.
"""  # noqa: E501

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from quantgate.jsonl import JsonlError, atomic_write_text
from quantgate.report import eval_error_table, livebench_report
from quantgate.scoring.livebench import (
    JUDGMENT_FILE,
    QUESTION_FILE,
    Judgment,
    ModelSummary,
    UnknownModelError,
    read_judgments,
    read_questions,
    relative_table,
    summarize,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_REFERENCE = "bf16"


class CliError(Exception):
    """A user-facing error: printed as one message, no traceback; exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status
    (``main(["livebench-summary", "--judgments", "data"])``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return it instead of exiting
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except (CliError, JsonlError, UnknownModelError, OSError) as exc:
        print(f"quantgate {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per command; a command sets ``run``
    (``args.run(args) -> int``).
    """
    parser = argparse.ArgumentParser(
        prog="quantgate", description="Gate quantized LLM checkpoints against BF16."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


# ---------------------------------------------------------------- livebench-summary


def add_livebench_summary(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "livebench-summary",
        help="summarize LiveBench judgments: official score, per-question mean, "
        "relative to a reference",
        description="Summarize LiveBench ground_truth_judgment.jsonl files the way "
        "show_livebench_result.py does (task mean -> category mean -> overall), with the "
        "per-question mean beside it, fixing the instruction-following task labels when "
        "--questions is given.",
    )
    parser.add_argument(
        "--judgments",
        nargs="+",
        required=True,
        type=Path,
        metavar="PATH",
        help=f"{JUDGMENT_FILE} files, or folders searched recursively for them",
    )
    parser.add_argument(
        "--questions",
        nargs="+",
        type=Path,
        metavar="PATH",
        help=f"{QUESTION_FILE} files or folders; task/category are then taken from the questions",
    )
    parser.add_argument(
        "--reference",
        metavar="MODEL",
        help=f"model that counts as 100%% (default: {DEFAULT_REFERENCE!r} if present)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="OUT", dest="json_out", help="also write the tables as JSON"
    )
    parser.add_argument(
        "--svg",
        type=Path,
        metavar="OUT",
        help="also draw each model's official and per-question score relative to the reference "
        "(reference = 100 %%) as an SVG bar chart, like the original reports' relative_bar.svg",
    )
    parser.set_defaults(run=run_livebench_summary)


def run_livebench_summary(args: argparse.Namespace) -> int:
    judgment_files = find_files(args.judgments, JUDGMENT_FILE, "--judgments")
    question_files = (
        find_files(args.questions, QUESTION_FILE, "--questions") if args.questions else []
    )
    judgments = [j for path in judgment_files for j in read_judgments(path)]
    questions = (
        [q for path in question_files for q in read_questions(path)] if args.questions else None
    )
    summaries = summarize(judgments, questions)
    if not summaries:
        raise CliError(f"no judgment rows in {', '.join(map(str, judgment_files))}")
    reference = _choose_reference(summaries, args.reference)
    relative = relative_table(summaries, reference) if reference else None

    print(
        f"LiveBench summary: {len(judgments)} judgment rows from {len(judgment_files)} file(s)"
        + (
            f", {len(questions)} questions from {len(question_files)} file(s)"
            if questions is not None
            else ""
        )
    )
    if questions is None:
        print(
            "note: no --questions: task/category taken from the judgment rows (upstream mislabels "
            "instruction-following tasks)"
        )
    if reference is None:
        print(
            f"note: no model named {DEFAULT_REFERENCE!r} and no --reference: relative table skipped"
        )
    print("\n" + livebench_report(summaries, relative, reference))
    if args.json_out:
        payload = {
            "judgment_files": [str(p) for p in judgment_files],
            "question_files": [str(p) for p in question_files],
            "reference": reference,
            "models": {model: asdict(summary) for model, summary in summaries.items()},
            "relative": None if relative is None else [asdict(row) for row in relative],
        }
        atomic_write_text(args.json_out, json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")
    if args.svg:
        if relative is None:
            raise CliError("--svg needs a reference model (--reference MODEL)")
        from quantgate.reporting.charts import livebench_relative_svg

        livebench_relative_svg(relative, reference, args.svg)
        print(f"wrote {args.svg}")
    return _report_eval_errors([j for summary in summaries.values() for j in summary.eval_errors])


def _report_eval_errors(eval_errors: Sequence[Judgment]) -> int:
    """Print the eval_error rows, if any; 1 if there are some, else 0."""
    if not eval_errors:
        return EXIT_OK
    print(
        f"\n{len(eval_errors)} eval_error row(s) (LiveBench scored them 0; fix the grader "
        "and re-judge):"
    )
    print(eval_error_table(eval_errors))
    return EXIT_FAILED


def find_files(paths: Sequence[Path], filename: str, option: str) -> list[Path]:
    """Files given directly, plus every ``filename`` under the folders given (sorted, each once)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            matches = sorted(path.rglob(filename))
            if not matches:
                raise CliError(f"{option}: no {filename} under {path}")
            found += matches
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"{option}: {path} does not exist")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(
            path.resolve(), path
        )  # a file named twice (directly and via its folder) counts once
    return list(unique.values())


def _choose_reference(summaries: dict[str, ModelSummary], requested: str | None) -> str | None:
    if requested is None:
        return DEFAULT_REFERENCE if DEFAULT_REFERENCE in summaries else None
    if requested not in summaries:
        raise CliError(
            f"--reference {requested!r} is not among the models: {', '.join(map(repr, summaries))}"
        )
    return requested


# ---------------------------------------------------------------- report


def add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write a report folder (report.md, report.json, SVGs) without a server",
        description="Rebuild a report from a quantgate dir's stored runs (runs/*/*/*/run.json) "
        "and the baselines, gated as the session did; or re-render a report folder from its "
        "report.json.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=Path(".quantgate"),
        help="a --quantgate-dir (default .quantgate) or a report folder holding report.json",
    )
    parser.add_argument(
        "--format",
        action="append",
        choices=["md", "json", "svg"],
        help="what to write (repeatable; default all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the report folder to write (default: a new "
        "PATH/reports/<UTC timestamp>, or PATH itself for a report folder)",
    )
    parser.add_argument("--suites-dir", type=Path, default=Path("tests/accuracy/suites"))
    parser.add_argument("--baselines-dir", type=Path, default=Path("baselines"))
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from quantgate.config import SuiteError
    from quantgate.reporting import (
        FORMATS,
        build_report,
        load_report,
        rebuild_rows,
        report_folder,
        write_report,
    )
    from quantgate.reporting.build import latest_server_logs
    from quantgate.suites import discover_suites

    formats = args.format or list(FORMATS)
    path = args.path.resolve() if args.path.exists() else args.path
    if (path / "report.json").exists():
        try:
            report = load_report(path)
        except (ValidationError, ValueError) as exc:
            raise CliError(f"{path / 'report.json'}: not a quantgate report ({exc})") from None
        folder = write_report(report, args.out or path, formats)
    elif (path / "runs").is_dir():
        try:
            suites = discover_suites(args.suites_dir)
        except SuiteError as exc:
            raise CliError(str(exc)) from None
        try:
            rows = rebuild_rows(path, suites, args.baselines_dir)
        except ValueError as exc:  # a stored run or throughput row that is not what we wrote
            raise CliError(str(exc)) from None
        if not rows.get("quantgate_setup"):
            raise CliError(
                f"{path / 'runs'}: no stored run (run.json) of a suite in {args.suites_dir}"
            )
        report = build_report(
            rows,
            suites,
            quantgate_dir=path,
            baselines_dir=args.baselines_dir.resolve(),
            server_logs=latest_server_logs(path, suites),
        )
        folder = write_report(report, args.out or report_folder(path), formats)
    else:
        raise CliError(f"{path}: neither a report folder (report.json) nor a quantgate dir (runs/)")
    print(f"quantgate report: {folder}")
    return EXIT_OK


COMMANDS: tuple[Callable[[Any], None], ...] = (add_livebench_summary, add_report)

if __name__ == "__main__":
    sys.exit(main())
