"""Every table quantgate prints: gate verdicts, LiveBench numbers, throughput, and the session
summary's sections, from plain-data rows (JSON-safe, so pytest-xdist carries them).

    >>> print(format_table(["model", "score"], [["bf16", 0.5], ["fp8", 0.25]]))
    model  score
    -----  -----
    bf16     0.5
    fp8     0.25
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from quantgate.hygiene import INDICATORS as HYGIENE_INDICATORS

__all__ = ["format_table", "percent", "summary_sections"]

# The keys of the rows a case records (pytest's ``user_properties``) for the session summary.
VERDICT_ROW = "quantgate_verdict"
LIVEBENCH_ROW = "quantgate_livebench"
THROUGHPUT_ROW = "quantgate_throughput"
HYGIENE_ROW = "quantgate_hygiene"
SETUP_ROW = "quantgate_setup"  # what ran: checkpoint, engine, samples (for the report folder)
SUITE_ROW = "quantgate_suite"  # one verdict per precision across its tasks (quantgate.family)
ROW_KEYS = (VERDICT_ROW, LIVEBENCH_ROW, THROUGHPUT_ROW, HYGIENE_ROW, SETUP_ROW, SUITE_ROW)

_ALIGN_CODES = {"<": "<", "left": "<", ">": ">", "right": ">", "^": "^", "center": "^"}
# A number as a report prints it: "12", "-3.5", "+1,024", "83.3%", "83.3 %", "-1.2 pp", "1e-05".
_NUMBER_TEXT = re.compile(r"^[+\-\u2212]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][+\-]?\d+)?\s*(%|pp)?$")
_MISSING_TEXT = {"", "-", "\u2013", "n/a", "nan"}


def percent(x: float | None, digits: int = 1, *, sign: bool = False, missing: str = "-") -> str:
    """Format a fraction as a percentage.

    >>> percent(0.8333)
    '83.3%'
    >>> percent(-0.0125, 2, sign=True)
    '-1.25%'
    >>> percent(None)
    '-'
    """
    if x is None:
        return missing
    return f"{x * 100:{'+' if sign else ''}.{digits}f}%"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    align: Sequence[str] | None = None,
) -> str:
    """Return an aligned plain-text table: header line, dashes, one line per row.

    Cells are printed with ``str()`` (floats with ``format(x, "g")``; ``None`` as empty).
    Without ``align``, a column whose cells are all numbers or number-like text
    (``"83.3%"``, ``"-1.2 pp"``; empty/``"-"`` cells allowed) is right-aligned, others left.
    ``align`` gives one code per column: ``"<"``/``"left"``, ``">"``/``"right"``,
    ``"^"``/``"center"``.

        >>> print(format_table(["task", "N"], [["zebra_puzzle", 50]], align=["<", ">"]))
        task           N
        ------------  --
        zebra_puzzle  50
    """
    width = len(headers)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"row {index} has {len(row)} cells, expected {width} "
                f"(one per header {list(headers)})"
            )
    codes = _resolve_alignment(align, width, rows)
    cells = [[_cell_text(value) for value in row] for row in rows]
    widths = [
        max([len(str(headers[col]))] + [len(row[col]) for row in cells]) for col in range(width)
    ]
    lines = [
        _join([str(h) for h in headers], widths, codes),
        _join(["-" * w for w in widths], widths, codes),
    ]
    lines += [_join(row, widths, codes) for row in cells]
    return "\n".join(lines)


def _resolve_alignment(
    align: Sequence[str] | None, width: int, rows: Sequence[Sequence[Any]]
) -> list[str]:
    if align is None:
        return [
            ">" if _is_numeric_column([row[col] for row in rows]) else "<" for col in range(width)
        ]
    if isinstance(align, str) or len(align) != width:
        raise ValueError(f"align must give one code per column ({width}), got {align!r}")
    try:
        return [_ALIGN_CODES[code] for code in align]
    except KeyError as exc:
        raise ValueError(
            f"unknown alignment {exc.args[0]!r}; use one of {sorted(_ALIGN_CODES)}"
        ) from None


def _is_numeric_column(values: list[Any]) -> bool:
    present = [
        v
        for v in values
        if not (v is None or (isinstance(v, str) and v.strip().lower() in _MISSING_TEXT))
    ]
    return bool(present) and all(_is_number_like(v) for v in present)


def _is_number_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, str) and bool(_NUMBER_TEXT.match(value.strip()))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _join(cells: Sequence[str], widths: Sequence[int], codes: Sequence[str]) -> str:
    return "  ".join(f"{cell:{code}{w}}" for cell, w, code in zip(cells, widths, codes)).rstrip()


# --- gate verdicts --------------------------------------------------------------------------------

VERDICT_HEADERS = [
    "case",
    "vs",
    "n",
    "ref",
    "cand",
    "diff",
    "interval",
    "margin",
    "flips -/+",
    "MDE",
    "verdict",
]


def verdict_record(case_id: str, against: str, verdict: Any, *, run: Any = None) -> dict:
    """A plain-data row (JSON-safe, so pytest-xdist can carry it) for one case's verdict."""
    if verdict is None:
        return {
            "case": case_id,
            "vs": against,
            "n": run.n if run else None,
            "cand": run.mean if run else None,
            "verdict": f"baseline {against}",
        }
    look_p = getattr(verdict, "look_p", None) or (None, None)
    return {
        "case": case_id,
        "vs": against,
        "n": verdict.n,
        "ref": verdict.reference_mean,
        "cand": verdict.candidate_mean,
        "diff": verdict.diff,
        "ci_low": verdict.ci_low,
        "ci_high": verdict.ci_high,
        "margin": verdict.margin,
        "threshold": verdict.threshold,
        "flips_down": verdict.flips_down,
        "flips_up": verdict.flips_up,
        # the MDE column: the drop FAIL catches with power 1 - beta under the verdict's FAIL
        # rule (quantgate.gate.Verdict.fail_mde); test_mde: the significance test's alone
        "mde": verdict.fail_mde if getattr(verdict, "fail_mde", None) is not None else verdict.mde,
        "test_mde": verdict.mde,
        "fail_rule": getattr(verdict, "fail_rule", "default"),
        "p_noninferiority": getattr(verdict, "p_noninferiority", None),
        "p_drop": getattr(verdict, "p_drop", None),
        # a sequential look: the p-values above are its repeated ones; these the look's own
        "look_p_noninferiority": look_p[0],
        "look_p_drop": look_p[1],
        "verdict": verdict.outcome,
        "required_n": verdict.required_n,  # the planning n (no true difference)
        "required_n_observed": getattr(verdict, "required_n_observed", None),
    }


def _signed_pp(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f} pp"


def n_cell(n: int | None, total: int | None = None, look: int | None = None, looks=None) -> Any:
    """The n column: the items compared; for a sequential run (quantgate.sequential) also of
    how many, and at which look it stopped: ``38/150 (look 1/4)``."""
    if n is None:
        return "-"
    if look is None or total is None:
        return n
    return f"{n}/{total} (look {look}/{looks})"


def verdict_cell(
    verdict: str, *, required_n: int | None = None, strict: bool = False, cached: bool = False
) -> str:
    """The verdict column with its notes: "strict" under the strict FAIL rule, "cached: no new
    run" for an own-history check of cached answers, the planning n when inconclusive."""
    notes = ["strict"] if strict else []
    notes += ["cached: no new run"] if cached else []
    notes += [f"n≈{required_n}"] if required_n else []
    return verdict + (f" ({', '.join(notes)})" if notes else "")


def summary_table(records: Sequence[dict]) -> str:
    """One line per recorded case: task, n, means, diff with its interval, margin, flips, MDE
    (the true drop FAIL catches with power 1 - beta), verdict (with the planning n when
    inconclusive, and "strict" under the strict FAIL rule)."""
    rows = []
    for r in records:
        interval = (
            "-"
            if r.get("ci_low") is None
            else f"[{r['ci_low'] * 100:+.1f}, {r['ci_high'] * 100:+.1f}]"
        )
        flips = "-" if r.get("flips_down") is None else f"{r['flips_down']}/{r['flips_up']}"
        rule = (
            _signed_pp(r.get("margin")).lstrip("+")
            if r.get("margin") is not None
            else (f"t={r['threshold']}" if r.get("threshold") is not None else "-")
        )
        verdict = verdict_cell(
            r["verdict"],
            required_n=r.get("required_n"),
            strict=r.get("fail_rule") == "strict",
            cached=bool(r.get("cached")),
        )
        rows.append(
            [
                r["case"],
                r["vs"],
                n_cell(r.get("n"), r.get("total"), r.get("look"), r.get("looks")),
                percent(r.get("ref")),
                percent(r.get("cand")),
                _signed_pp(r.get("diff")),
                interval,
                rule,
                flips,
                _signed_pp(r.get("mde")).lstrip("+"),
                verdict,
            ]
        )
    return format_table(
        VERDICT_HEADERS, rows, align=["<", "<", ">", ">", ">", ">", ">", ">", ">", ">", "<"]
    )


def verdict_table(entries: Sequence[tuple[str, str, Any]]) -> str:
    """The table a failing case prints: ``verdict_table([("tiny-arith-int2", "bf16", v)])``."""
    return summary_table([verdict_record(case, against, v) for case, against, v in entries])


# --- LiveBench: official and per-question numbers, relative to the reference ---------------------


def livebench_record(
    case_id: str, stats: dict, against: str | None = None, reference: dict | None = None
) -> dict:
    """A plain-data row: a LiveBench case's statistics (``TaskRun.provenance["livebench"]``) and,
    for a candidate, those of the reference precision's baseline."""
    return {"case": case_id, "vs": against, "stats": stats, "reference": reference}


def livebench_table(records: Sequence[dict]) -> str:
    """Overall (official and per-question, with the ratio to the reference and the gap in
    points), then the per-category means with N; scores x100 as LiveBench prints them."""
    from quantgate.scoring.livebench import relative_table

    overall, categories = [], []
    for r in records:
        stats, ref = r["stats"], r.get("reference")
        row = [
            r["case"],
            r.get("vs") or "-",
            _x100(stats.get("official")),
            _x100(stats.get("per_question_mean")),
            stats.get("n"),
        ]
        if ref:
            mine, theirs = _model_summary("candidate", stats), _model_summary("reference", ref)
            rel = relative_table({"reference": theirs, "candidate": mine}, "reference")[1]
            row += [
                percent(rel.official_relative),
                _pp(rel.official_gap_pp),
                percent(rel.per_question_relative),
                _pp(rel.per_question_gap_pp),
            ]
        else:
            row += ["-", "-", "-", "-"]
        overall.append(row)
        for name, group in stats.get("categories", {}).items():
            ref_group = (ref or {}).get("categories", {}).get(name)
            categories.append(
                [
                    r["case"],
                    name,
                    _x100(group["official"]),
                    _x100(group["mean"]),
                    group["n"],
                    _x100(ref_group["official"]) if ref_group else "-",
                ]
            )
    return "\n".join(
        [
            "Overall (x100; official = mean of category means, each the mean of its task means)",
            format_table(
                [
                    "case",
                    "vs",
                    "official",
                    "per-question",
                    "N",
                    "official rel",
                    "gap",
                    "per-question rel",
                    "gap",
                ],
                overall,
            ),
            "\nPer category (x100; official = mean of its task means; "
            "ref = the reference's official)",
            format_table(["case", "category", "official", "per-question", "N", "ref"], categories),
        ]
    )


def _model_summary(model: str, stats: dict):
    from quantgate.scoring.livebench import GroupScore, ModelSummary

    return ModelSummary(
        model=model,
        official=stats.get("official"),
        per_question_mean=stats.get("per_question_mean"),
        n=stats.get("n") or 0,
        categories={
            k: GroupScore(v["official"], v["mean"], v["n"])
            for k, v in stats.get("categories", {}).items()
        },
        tasks={
            k: GroupScore(v["mean"], v["mean"], v["n"]) for k, v in stats.get("tasks", {}).items()
        },
    )


def _x100(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} pp"


# --- LiveBench summaries of existing folders (``python -m quantgate livebench-summary``) ----------


def livebench_report(summaries: dict, relative: list | None, reference: str | None) -> str:
    """The tables as text: overall, judgment health, relative to the reference (if any), per
    category (``summaries`` and ``relative`` from :mod:`quantgate.scoring.livebench`)."""
    sections = [
        "Overall (x100; official = mean of category means, each a mean of task means)",
        format_table(
            ["model", "official", "per-question", "N"],
            [
                [s.model, _x100(s.official), _x100(s.per_question_mean), s.n]
                for s in summaries.values()
            ],
        ),
        "\nJudgment health (rows per model)",
        format_table(
            [
                "model",
                "skipped (-1)",
                "duplicates",
                "relabeled",
                "not in questions",
                "missing",
                "eval_error",
            ],
            [
                [
                    s.model,
                    s.n_skipped,
                    s.n_duplicates,
                    s.n_relabeled,
                    len(s.unknown_question_ids),
                    len(s.missing_question_ids),
                    len(s.eval_errors),
                ]
                for s in summaries.values()
            ],
        ),
    ]
    if relative is not None:
        sections += [
            f"\nRelative to {reference} ({reference} = 100%)",
            format_table(
                ["model", "metric", "score", "relative", "gap"],
                [
                    row
                    for r in relative
                    for row in (
                        [
                            r.model,
                            "official",
                            _x100(r.official),
                            percent(r.official_relative),
                            _pp(r.official_gap_pp),
                        ],
                        [
                            r.model,
                            "per-question",
                            _x100(r.per_question_mean),
                            percent(r.per_question_relative),
                            _pp(r.per_question_gap_pp),
                        ],
                    )
                ],
            ),
        ]
    sections += [
        "\nPer category (x100; official = mean of its task means)",
        format_table(
            ["model", "category", "official", "per-question", "N"],
            [
                [s.model, name, _x100(c.official), _x100(c.mean), c.n]
                for s in summaries.values()
                for name, c in s.categories.items()
            ],
        ),
    ]
    return "\n".join(sections)


def eval_error_table(eval_errors: Sequence[Any]) -> str:
    """The judgments LiveBench marked ``eval_error``
    (:class:`~quantgate.scoring.livebench.Judgment`).
    """
    return format_table(
        ["model", "question_id", "task", "error", "where"],
        [
            [j.model, j.question_id, j.task, j.error or "", f"{j.source}:{j.line}"]
            for j in eval_errors
        ],
    )


# --- throughput --------------------------------------------------------------------------------

SPEED_HEADERS = [
    "precision",
    "requests",
    "conc",
    "tokens",
    "tok/req",
    "time",
    "tok/s",
    "req/s",
    "latency",
    "tok/s vs {ref}",
    "req/s vs {ref}",
]


def relative_speed_table(results: Mapping[str, Any], reference: str) -> str:
    """One row per precision (in the given order) of
    :class:`~quantgate.serving.throughput.ThroughputResult`: totals, rates, mean latency, and
    tokens/s and requests/s relative to ``reference`` (100 %); ``-`` where the reference did not
    run.

        >>> from quantgate.serving.throughput import ThroughputResult
        >>> r = {"bf16": ThroughputResult(16, 2, 32, 4.0, 512),
        ...      "fp8": ThroughputResult(16, 2, 32, 2.5, 512)}
        >>> print(relative_speed_table(r, "bf16"))
        precision  requests  conc  tokens  tok/req    time  tok/s  req/s  latency  tok/s vs bf16  req/s vs bf16
        ---------  --------  ----  ------  -------  ------  -----  -----  -------  -------------  -------------
        bf16             16     2     512     32.0  4.00 s  128.0   4.00        -        100.0 %        100.0 %
        fp8              16     2     512     32.0  2.50 s  204.8   6.40        -        160.0 %        160.0 %
    """  # noqa: E501
    ref = results.get(reference)

    def relative(value: float, ref_value: float | None) -> str:
        if ref_value is None or not ref_value > 0 or math.isnan(value):
            return "-"
        return f"{100 * value / ref_value:.1f} %"

    rows = []
    for precision, r in results.items():
        rows.append(
            [
                precision,
                r.requests,
                r.concurrency,
                r.completion_tokens,
                f"{r.tokens_per_request:.1f}",
                _seconds(r.elapsed_s),
                f"{r.tokens_per_s:.1f}",
                f"{r.requests_per_s:.2f}",
                _seconds(r.mean_latency_s),
                relative(r.tokens_per_s, ref.tokens_per_s if ref else None),
                relative(r.requests_per_s, ref.requests_per_s if ref else None),
            ]
        )
    headers = [h.format(ref=reference) for h in SPEED_HEADERS]
    return format_table(headers, rows, align=["<"] + [">"] * (len(headers) - 1))


def throughput_record(suite: str, precision: str, reference: str, result: Any) -> dict:
    """A plain-data row of one throughput case (``result.to_record()`` inside)."""
    return {
        "suite": suite,
        "precision": precision,
        "reference": reference,
        "result": result.to_record(),
    }


def throughput_report(records: Sequence[dict]) -> str:
    """Per suite, every precision's speed relative to the suite's reference (first)."""
    from quantgate.serving.throughput import ThroughputResult

    suites: dict[str, dict] = {}
    for row in records:
        entry = suites.setdefault(row["suite"], {"reference": row["reference"], "results": {}})
        entry["results"][row["precision"]] = ThroughputResult.from_record(row["result"])
    lines = []
    for name, entry in suites.items():
        reference, results = entry["reference"], entry["results"]
        ordered = dict(sorted(results.items(), key=lambda kv: kv[0] != reference))
        note = "" if reference in results else f" ({reference} did not run: no relative speed)"
        lines.append(f"suite {name}, relative to {reference} = 100 %{note}")
        lines.append(relative_speed_table(ordered, reference))
    return "\n".join(lines)


def _seconds(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.3f} s" if x < 1 else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


# --- the session summary ---------------------------------------------------------------------


def hygiene_table(records: list[dict]) -> str:
    """The reasoning-hygiene rows (:func:`quantgate.hygiene.hygiene_record`): each indicator's
    share, reference -> candidate."""

    def pair(value) -> str:
        return "-" if not value else f"{value[0]:.1%} -> {value[1]:.1%}"

    rows = [
        [r["case"], r["vs"], *(pair(r.get(name)) for name in HYGIENE_INDICATORS), r["verdict"]]
        for r in records
    ]
    return format_table(["case", "vs", "truncated", "empty", "no answer", "hygiene"], rows)


def summary_sections(rows: Mapping[str, Sequence[dict]]) -> list[tuple[str, str]]:
    """``(title, text)`` per section of the terminal summary, from the rows collected under
    each of :data:`ROW_KEYS`; sections without rows are left out."""
    sections = []
    if rows.get(VERDICT_ROW):
        sections.append(("quantgate gate summary", summary_table(rows[VERDICT_ROW])))
    if rows.get(SUITE_ROW):
        sections.append(("quantgate suite verdicts", suite_verdict_table(rows[SUITE_ROW])))
    if rows.get(HYGIENE_ROW):
        sections.append(("quantgate reasoning hygiene", hygiene_table(rows[HYGIENE_ROW])))
    if rows.get(LIVEBENCH_ROW):
        sections.append(("quantgate LiveBench summary", livebench_table(rows[LIVEBENCH_ROW])))
    if rows.get(THROUGHPUT_ROW):
        sections.append(("quantgate throughput", throughput_report(rows[THROUGHPUT_ROW])))
    return sections


def suite_record(suite: str, precision: str, verdict: Any) -> dict:
    """A plain-data row of one precision's suite verdict (quantgate.family.SuiteVerdict)."""
    return {
        "suite": suite,
        "precision": precision,
        "outcome": verdict.outcome,
        "family_alpha": verdict.family_alpha,
        "tasks": [t.task for t in verdict.tasks],
        "failed": list(verdict.failed),
        "undecided": list(verdict.undecided),
        "message": verdict.message,
    }


def suite_verdict_table(records: Sequence[dict]) -> str:
    """One line per precision: its verdict across the tasks (Holm at the family alpha)."""
    rows = [
        [
            f"{r['suite']}-all-{r['precision']}",
            len(r["tasks"]),
            f"{r['family_alpha']:g}",
            r["outcome"],
            ", ".join(r["failed"]) or "-",
            ", ".join(r["undecided"]) or "-",
        ]
        for r in records
    ]
    return format_table(
        ["case", "tasks", "family alpha", "verdict", "failed", "need more items"], rows
    )
