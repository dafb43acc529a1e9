"""From the rows a session's cases recorded (or that :func:`rebuild_rows` recomputes from stored
runs and baselines) to a :class:`~quantgate.reporting.schema.Report`.

A rebuilt report carries what the session's did: the task verdicts, the suite verdicts, the
LiveBench, throughput and hygiene rows and the server logs. Throughput cases keep their row in
``runs/<suite>/<precision>/throughput/throughput.json`` (:func:`store_throughput`) for it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantgate.config import Suite
from quantgate.report import (
    HYGIENE_ROW,
    LIVEBENCH_ROW,
    SETUP_ROW,
    SUITE_ROW,
    THROUGHPUT_ROW,
    VERDICT_ROW,
)
from quantgate.reporting.schema import (
    Artifacts,
    Host,
    PrecisionSetup,
    Report,
    SuiteSetup,
    TaskResult,
)

Rows = Mapping[str, Sequence[dict]]
_PRECISION_KEYS = (
    "checkpoint",
    "revision",
    "quantization",
    "engine",
    "engine_version",
    "endpoint",
    "served_model",
)


def build_report(
    rows: Rows,
    suites: Mapping[str, Suite],
    *,
    quantgate_dir: Path | None = None,
    baselines_dir: Path | None = None,
    server_logs: Sequence[Path] = (),
    created: datetime | None = None,
) -> Report:
    """The report of the cases in ``rows`` (keys of :data:`quantgate.report.ROW_KEYS`)."""
    from quantgate.baselines import host_provenance

    setups = {r["case"]: r for r in rows.get(SETUP_ROW, [])}
    verdicts: dict[str, list[dict]] = {}
    for record in rows.get(VERDICT_ROW, []):
        verdicts.setdefault(record["case"], []).append(record)
    tasks = [
        _task_result(setup, verdicts.get(case, []), suites.get(setup["suite"]))
        for case, setup in setups.items()
    ]
    order = {name: {p: i for i, p in enumerate(_reference_first(s))} for name, s in suites.items()}
    tasks.sort(key=lambda t: (t.suite, t.task, order.get(t.suite, {}).get(t.precision, 99)))
    # rows in one order however they arrived (pytest-xdist workers finish in any order): by
    # suite, precision (reference first), then task as the suite lists them
    task_order = {name: {t: i for i, t in enumerate(s.tasks)} for name, s in suites.items()}

    def by_precision(row: dict) -> tuple:
        return (row["suite"], order.get(row["suite"], {}).get(row["precision"], 99))

    def by_case(row: dict) -> tuple:
        setup = setups.get(row.get("case"), {})
        suite = setup.get("suite", "")
        return (
            suite,
            order.get(suite, {}).get(setup.get("precision"), 99),
            task_order.get(suite, {}).get(setup.get("task"), 99),
        )

    host = host_provenance()
    return Report(
        created=(created or datetime.now(UTC)).isoformat(timespec="seconds"),
        host=Host(python=host["python"], **host["hardware"]),
        suites=[_suite_setup(suites[name], setups) for name in sorted({t.suite for t in tasks})],
        tasks=tasks,
        suite_verdicts=sorted(rows.get(SUITE_ROW, []), key=by_precision),
        livebench=sorted(rows.get(LIVEBENCH_ROW, []), key=by_case),
        throughput=sorted(rows.get(THROUGHPUT_ROW, []), key=by_precision),
        hygiene=sorted(rows.get(HYGIENE_ROW, []), key=by_case),
        artifacts=Artifacts(
            quantgate_dir=str(quantgate_dir) if quantgate_dir else None,
            runs=str(Path(quantgate_dir) / "runs") if quantgate_dir else None,
            server_logs=[str(p) for p in server_logs],
            baselines=str(baselines_dir) if baselines_dir else None,
        ),
    )


def _reference_first(suite: Suite) -> list[str]:
    return sorted(suite.precisions, key=lambda p: p != suite.reference)


def _task_result(setup: dict, records: list[dict], suite: Suite | None) -> TaskResult:
    reference = suite.reference if suite else None
    gated = [r for r in records if r["vs"] == reference]
    record = (gated or records or [{}])[0]
    score = record.get("cand", setup.get("mean"))
    ref = record.get("ref") if gated else (score if setup["precision"] == reference else None)
    return TaskResult(
        suite=setup["suite"],
        task=setup["task"],
        precision=setup["precision"],
        vs=record.get("vs") or "-",
        n=record.get("n", setup.get("n")),
        score=score,
        reference_score=ref,
        relative=(score / ref) if score is not None and ref else None,
        diff=record.get("diff"),
        ci_low=record.get("ci_low"),
        ci_high=record.get("ci_high"),
        margin=record.get("margin"),
        flips_down=record.get("flips_down"),
        flips_up=record.get("flips_up"),
        mde=record.get("mde"),
        verdict=record.get("verdict") or "-",
        required_n=record.get("required_n"),
        p_noninferiority=record.get("p_noninferiority"),
        p_drop=record.get("p_drop"),
        look_p_noninferiority=record.get("look_p_noninferiority"),
        look_p_drop=record.get("look_p_drop"),
        cached=bool(record.get("cached")),
        look=record.get("look"),
        looks=record.get("looks"),
        total=record.get("total"),
        samples=setup.get("samples"),
    )


def _suite_setup(suite: Suite, setups: Mapping[str, dict]) -> SuiteSetup:
    ran: dict[str, dict[str, Any]] = {}
    for setup in setups.values():
        if setup["suite"] == suite.name:
            ran.setdefault(setup["precision"], {k: setup.get(k) for k in _PRECISION_KEYS})
    path = Path(suite.path) if suite.path else None
    return SuiteSetup(
        name=suite.name,
        model=suite.model,
        reference=suite.reference,
        file=str(path) if path else None,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest()
        if path and path.exists()
        else None,
        tensor_parallel_size=suite.engine.vllm.tensor_parallel_size,
        precisions=[
            PrecisionSetup(precision=p, **ran[p]) for p in _reference_first(suite) if p in ran
        ],
    )


THROUGHPUT_FILE = "throughput.json"


def throughput_path(root: Path, suite: str, precision: str) -> Path:
    """Where a throughput case keeps its row (beside its precision's task runs)."""
    from quantgate.cases import THROUGHPUT
    from quantgate.runners.registry import run_dir

    return run_dir(root, suite, precision, THROUGHPUT) / THROUGHPUT_FILE


def store_throughput(root: Path, record: dict) -> Path:
    """Keep a throughput case's row (:func:`quantgate.report.throughput_record`) for a rebuilt
    report."""
    import json

    from quantgate.jsonl import atomic_write_text

    path = throughput_path(root, record["suite"], record["precision"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def latest_server_logs(root: Path, suites: Mapping[str, Suite]) -> list[Path]:
    """Per (suite, precision) folder under ``root/runs``, its newest server log (the names
    begin with the session's UTC start time)."""
    from quantgate.serving.engines import server_log_name

    logs = []
    for name in sorted(suites):
        for folder in sorted((Path(root) / "runs" / name).glob("*/")):
            logs += sorted(folder.glob(server_log_name("*")))[-1:]
    return logs


def rebuild_rows(root: Path, suites: Mapping[str, Suite], baselines_root: Path) -> dict:
    """The rows a session would have recorded, recomputed without a server from the runs stored
    under ``root/runs`` (each case's ``run.json``, each throughput case's row) and the
    baselines: the same decisions (:func:`quantgate.decision.decide_case`, and
    :func:`quantgate.decision.decide_suite` per candidate precision), never a snapshot write."""
    import json

    from quantgate.cases import SUITE_TASK, Case, has_suite_verdict
    from quantgate.decision import decide_case, decide_suite
    from quantgate.report import ROW_KEYS
    from quantgate.runners.registry import RUN_FILE, run_dir
    from quantgate.runs import TaskRun

    rows: dict[str, list[dict]] = {key: [] for key in ROW_KEYS}
    for name, suite in sorted(suites.items()):
        for precision in _reference_first(suite):
            verdicts: dict[str, Any] = {}
            for task in suite.tasks:
                folder = run_dir(root, name, precision, task)
                if not (folder / RUN_FILE).exists():
                    continue
                run = TaskRun.load(folder / RUN_FILE, samples_path=folder / "samples.jsonl")
                decision = decide_case(
                    Case(name, task, precision), run, suite, baselines_root=baselines_root
                )
                for key, record in decision.rows:
                    rows[key].append(record)
                if decision.verdict is not None:
                    verdicts[task] = decision.verdict
            if verdicts and has_suite_verdict(suite, precision):
                verdict = decide_suite(Case(name, SUITE_TASK, precision), suite, verdicts)
                for key, record in verdict.rows:
                    rows[key].append(record)
            stored = throughput_path(root, name, precision)
            if stored.exists():
                try:
                    record = json.loads(_read(stored))
                except ValueError as exc:
                    raise ValueError(f"{stored}: not a stored throughput row ({exc})") from None
                if not isinstance(record, dict) or not {"suite", "precision"} <= set(record):
                    raise ValueError(f"{stored}: not a stored throughput row (no suite/precision)")
                rows[THROUGHPUT_ROW].append(record)
    return rows


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
