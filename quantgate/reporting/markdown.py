"""``report.md``: what a release engineer attaches to a ticket."""

from __future__ import annotations

from collections.abc import Sequence

from quantgate.reporting.schema import Report, TaskResult


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def _pp(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} pp"


def _interval(t: TaskResult) -> str:
    if t.ci_low is None or t.ci_high is None:
        return "–"
    return f"[{t.ci_low * 100:+.1f}, {t.ci_high * 100:+.1f}] pp"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Report, *, images: bool = True) -> str:
    from quantgate.report import (
        hygiene_table,
        livebench_table,
        n_cell,
        throughput_report,
        verdict_cell,
    )

    names = ", ".join(s.name for s in report.suites) or "no suite"
    out = [f"# quantgate report: {names}", "", f"Created {report.created} (UTC)."]
    host = report.host
    gpus = ", ".join(host.gpus) or "none"
    out += ["", "## Setup", ""]
    out.append(
        f"Host: {host.system} {host.machine}, {host.cpu_count} CPUs, GPUs: {gpus}; "
        f"Python {host.python}."
    )
    for suite in report.suites:
        digest = suite.file_sha256[:12] if suite.file_sha256 else "–"
        out += [
            "",
            f"Suite **{suite.name}** (model {suite.model}; reference {suite.reference}; "
            f"file `{suite.file}`, sha256 {digest}; tensor parallel {suite.tensor_parallel_size})",
            "",
            _table(
                ["precision", "checkpoint", "revision", "engine", "version", "served as"],
                [
                    [
                        p.precision,
                        f"`{p.checkpoint}`"
                        + (f" (`--quantization {p.quantization}`)" if p.quantization else ""),
                        p.revision or "–",
                        p.engine or "–",
                        p.engine_version or "–",
                        p.served_model or p.endpoint or "–",
                    ]
                    for p in suite.precisions
                ],
            ),
        ]
    if images and report.tasks:
        out += ["", "![each task relative to the reference](relative.svg)", ""]
        out += ["![flips per task](flips.svg)"]
    for suite in report.suites:
        out += ["", f"## Results: {suite.name}"]
        tasks = [t for t in report.tasks if t.suite == suite.name]
        for name in dict.fromkeys(t.task for t in tasks):
            out += ["", f"### {name}", ""]
            out.append(
                _table(
                    [
                        "precision",
                        "score",
                        f"relative ({suite.reference} = 100 %)",
                        "gap",
                        "interval",
                        "margin",
                        "flips −/+",
                        "n",
                        "verdict",
                    ],
                    [
                        [
                            t.precision,
                            _pct(t.score),
                            _pct(t.relative),
                            _pp(t.diff),
                            _interval(t),
                            "–" if t.margin is None else f"{t.margin * 100:g} pp",
                            "–" if t.flips_down is None else f"{t.flips_down}/{t.flips_up}",
                            n_cell(t.n, t.total, t.look, t.looks),
                            verdict_cell(t.verdict, required_n=t.required_n, cached=t.cached),
                        ]
                        for t in tasks
                        if t.task == name
                    ],
                )
            )
    if report.suite_verdicts:
        out += ["", "## Suite verdicts", ""]
        out.append(
            _table(
                ["suite", "precision", "verdict", "why"],
                [
                    [v.get("suite"), v.get("precision"), v.get("outcome"), v.get("message", "")]
                    for v in report.suite_verdicts
                ],
            )
        )
    for title, rows, render in (
        ("LiveBench", report.livebench, livebench_table),
        ("Throughput", report.throughput, throughput_report),
        ("Reasoning hygiene", report.hygiene, hygiene_table),
    ):
        if rows:
            out += ["", f"## {title}", "", "```", render(rows), "```"]
    art = report.artifacts
    out += ["", "## Artifacts", ""]
    out.append(f"- samples and `run.json` per case: `{art.runs}/<suite>/<precision>/<task>/`")
    out += [f"- server log: `{log}`" for log in art.server_logs]
    out.append(f"- baselines: `{art.baselines}`")
    out.append("- this report's data: `report.json` (docs/report-schema.md)")
    return "\n".join(out) + "\n"
