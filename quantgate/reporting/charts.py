"""The report's pictures, with matplotlib (a plain :class:`~matplotlib.figure.Figure`, so no
pyplot backend is touched; Agg for PNG), byte-for-byte deterministic: a fixed ``svg.hashsalt``
and no date in the metadata. The file's suffix picks the format (``.svg``, ``.png``).

- ``relative.svg``: one panel per task, one bar per candidate precision: its score relative to
  the reference (reference = 100 %, a dotted line), the gate's paired interval as whiskers, the
  margin as a red dashed mark (a PASS keeps the whole interval right of it), the bar coloured by
  the verdict, and the numbers (relative score, gap in pp, verdict) beside the panel;
- ``flips.svg``: one panel per task, per candidate the items it lost (left, red) and gained
  (right, blue) against the reference, each count written at its bar's end;
- :func:`livebench_relative_svg`: ``quantgate livebench-summary --svg``, each model's official
  and per-question LiveBench score relative to the reference (reference = 100 %).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from quantgate.reporting.schema import Report, TaskResult

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
VERDICT_COLORS = {"pass": "#4c72b0", "fail": "#c44e52", "inconclusive": "#dd8452"}
OTHER_COLOR = "#8c8c8c"
LOST, GAINED = "#c44e52", "#4c72b0"
MARGIN_COLOR = "#d62728"
RC = {"svg.hashsalt": "quantgate", "svg.fonttype": "path", "font.size": 9}


def _gated(report: Report) -> dict[str, list[TaskResult]]:
    """Per ``suite/task``, the candidates gated against their suite's reference, in report order."""
    references = {s.name: s.reference for s in report.suites}
    panels: dict[str, list[TaskResult]] = {}
    for t in report.tasks:
        if t.diff is not None and t.vs == references.get(t.suite) != t.precision:
            panels.setdefault(f"{t.suite}/{t.task}", []).append(t)
    return panels


def _reference_name(report: Report) -> str:
    """The reference precision's name where every suite has the same one."""
    names = sorted({s.reference for s in report.suites})
    return names[0] if len(names) == 1 else "the reference"


def _items(t: TaskResult) -> str:
    """The items a candidate was gated on: "n 150", or "n 50/150" where a sequential run
    stopped early."""
    if t.total is not None and t.n is not None and t.n < t.total:
        return f"n {t.n}/{t.total}"
    return f"n {t.n}"


@contextmanager
def _figure(panels: dict[str, list[TaskResult]], width: float = 8.0):
    """A figure with one panel (axes) per task, stacked, sharing the x axis; saved by the
    caller inside the block (the rc settings hold there)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        rows = [len(results) for results in panels.values()] or [1]
        heights = [0.32 * n + 0.45 for n in rows]
        fig = Figure(figsize=(width, sum(heights) + 1.1), dpi=100, layout="constrained")
        axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False, height_ratios=rows)[:, 0]
        yield fig, list(axes)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "svg"
    metadata = {"Date": None} if kind == "svg" else {}
    fig.savefig(path, format=kind, metadata=metadata)
    return path


def _empty(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _rows(ax, results: list[TaskResult], title: str) -> list[int]:
    ys = list(range(len(results)))
    ax.set_yticks(ys, [t.precision for t in results])
    ax.set_ylim(len(results) - 0.5, -0.5)  # the first precision on top
    ax.set_title(title, loc="left", fontsize=9, fontweight="bold")
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ys


def _pct(x: float) -> float:
    return 100.0 * x


def _task_chart(report: Report, path: Path, draw) -> Path:
    """One panel per gated task, drawn by ``draw(fig, axes, panels, reference)`` (or a note
    where nothing was gated), saved to ``path``."""
    panels = _gated(report)
    with _figure(panels) as (fig, axes):
        if panels:
            draw(fig, axes, panels, _reference_name(report))
        else:
            _empty(axes[0], "no candidate was gated against its reference")
        return _save(fig, path)


def relative_svg(report: Report, path: Path) -> Path:
    """Each candidate's score relative to the reference, with its interval and the margin."""
    return _task_chart(report, path, _draw_relative)


def flips_svg(report: Report, path: Path) -> Path:
    """Each candidate's flips against the reference: lost to the left, gained to the right."""
    return _task_chart(report, path, _draw_flips)


def _draw_relative(fig, axes, panels: dict[str, list[TaskResult]], reference: str) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    right = 105.0
    for ax, (task, results) in zip(axes, panels.items()):
        ys = _rows(ax, results, task)
        for y, t in zip(ys, results):
            color = VERDICT_COLORS.get(t.verdict, OTHER_COLOR)
            base = t.reference_score
            if not base:  # the reference scored 0: nothing to be relative to
                ax.annotate("–", (1.01, y), xycoords=("axes fraction", "data"), va="center")
                continue
            value = _pct(t.relative if t.relative is not None else t.score / base)
            low = _pct((base + (t.ci_low if t.ci_low is not None else t.diff)) / base)
            high = _pct((base + (t.ci_high if t.ci_high is not None else t.diff)) / base)
            ax.barh(y, value, height=0.62, color=color)
            if value < 1:  # a bar too short to see: a mark at its value
                ax.plot(value, y, marker="D", markersize=5, color=color, clip_on=False)
            ax.errorbar(
                value,
                y,
                xerr=[[max(0.0, value - low)], [max(0.0, high - value)]],
                fmt="none",
                ecolor="black",
                elinewidth=1.1,
                capsize=3,
            )
            if t.margin is not None:
                mark = _pct((base - t.margin) / base)
                ax.vlines(mark, y - 0.42, y + 0.42, colors=MARGIN_COLOR, linestyles="--")
            right = max(right, high + 3)
            ax.annotate(
                f"{value:5.1f} %  {_pct(t.diff):+5.1f} pp  {t.verdict.upper():<4}  {_items(t)}",
                (1.01, y),
                xycoords=("axes fraction", "data"),
                va="center",
                family="monospace",
                color=VERDICT_COLORS.get(t.verdict, "black"),
                fontweight="bold" if t.verdict == "fail" else "normal",
            )
        ax.axvline(100, color="black", linewidth=0.9, linestyle=":")
    axes[0].set_xlim(0, right)
    axes[-1].set_xlabel(f"score relative to {reference} (%)")
    shown = {t.verdict for results in panels.values() for t in results}
    handles = [Patch(color=c, label=v) for v, c in VERDICT_COLORS.items() if v in shown]
    handles += [
        Line2D([], [], color="black", linestyle=":", label=f"{reference} = 100 %"),
        Line2D([], [], color="black", marker="|", markersize=8, label="paired interval"),
        Line2D([], [], color=MARGIN_COLOR, linestyle="--", label="−margin"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=6, frameon=False)
    fig.suptitle(
        f"Each task's score relative to {reference} (= 100 %) on the items each precision "
        "was gated on;\na PASS keeps the whole interval right of the −margin mark",
        fontsize=9,
    )


def _draw_flips(fig, axes, panels: dict[str, list[TaskResult]], reference: str) -> None:
    from matplotlib.patches import Patch

    most_lost, most_gained = 1, 1
    for ax, (task, results) in zip(axes, panels.items()):
        ys = _rows(ax, results, task)
        for y, t in zip(ys, results):
            down, up = t.flips_down or 0, t.flips_up or 0
            most_lost, most_gained = max(most_lost, down), max(most_gained, up)
            ax.barh(y, -down, height=0.62, color=LOST)
            ax.barh(y, up, height=0.62, color=GAINED)
            for x, text, side, offset in (
                (-down, f"−{down}" if down else "0", "right", -3),
                (up, f"+{up}   ({_items(t)})", "left", 3),
            ):
                ax.annotate(
                    text,
                    (x, y),
                    textcoords="offset points",
                    xytext=(offset, 0),
                    ha=side,
                    va="center",
                    fontsize=8,
                )
        ax.axvline(0, color="black", linewidth=0.8)
    left = most_lost * 1.3 + 2  # room for the counts at the bars' ends
    axes[0].set_xlim(-left, max(most_gained * 1.3 + 2, 0.25 * left))
    axes[-1].set_xlabel(f"items against {reference}: lost (left) and gained (right)")
    handles = [
        Patch(color=LOST, label=f"lost: right for {reference}, wrong here"),
        Patch(color=GAINED, label=f"gained: wrong for {reference}, right here"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"Flips per task and precision against {reference}", fontsize=9)


def livebench_relative_svg(rows, reference: str, path: Path) -> Path:
    """Bars of ``rows`` (:class:`quantgate.scoring.livebench.RelativeRow`): official and
    per-question score relative to ``reference`` (= 100 %), the value written on each bar."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.2), dpi=100, layout="constrained")
        ax = fig.subplots()
        width = 0.38
        for j, (name, attr) in enumerate(
            (
                ("official (task → category → overall)", "official_relative"),
                ("per-question mean", "per_question_relative"),
            )
        ):
            xs = [i - width / 2 + j * width for i in range(len(rows))]
            ys = [(getattr(r, attr) or 0.0) * 100 for r in rows]
            ax.bar(xs, ys, width * 0.95, label=name, color=COLORS[j])
            for x, y in zip(xs, ys):
                ax.annotate(
                    f"{y:.1f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=7,
                )
        ax.axhline(100, color="black", linewidth=0.8, linestyle="dotted")
        ax.set_xticks(range(len(rows)), [r.model for r in rows], rotation=20, ha="right")
        ax.set_ylabel(f"LiveBench score relative to {reference} (%)")
        ax.set_title(f"LiveBench relative to {reference} = 100 %", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        return _save(fig, path)
