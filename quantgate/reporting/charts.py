"""The report's pictures, with matplotlib (Agg), byte-for-byte deterministic: a fixed
``svg.hashsalt`` and no date in the metadata.

- ``relative.svg``: per task, each candidate's difference to the reference in pp with its
  one-sided interval as error bars, the task's −margin drawn as a red dashed line;
- ``flips.svg``: per task and candidate, the items lost (down) and gained (up);
- :func:`livebench_relative_svg`: ``quantgate livebench-summary --svg``, each model's official
  and per-question LiveBench score relative to the reference (reference = 100 %).
"""

from __future__ import annotations

from pathlib import Path

from quantgate.reporting.schema import Report, TaskResult

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _gated(report: Report) -> tuple[list[str], list[str], dict[tuple[str, str], TaskResult]]:
    """The candidates' gated results (against their suite's reference), by (task, precision)."""
    references = {s.name: s.reference for s in report.suites}
    results = {
        (f"{t.suite}/{t.task}", t.precision): t
        for t in report.tasks
        if t.diff is not None and t.vs == references.get(t.suite) != t.precision
    }
    tasks = list(dict.fromkeys(k[0] for k in results))
    precisions = list(dict.fromkeys(k[1] for k in results))
    return tasks, precisions, results


def _figure(n_tasks: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "quantgate"
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * n_tasks + 2), 4.2), dpi=100)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def relative_svg(report: Report, path: Path) -> Path:
    tasks, precisions, results = _gated(report)
    plt, fig, ax = _figure(len(tasks))
    width = 0.8 / max(1, len(precisions))
    for j, precision in enumerate(precisions):
        xs, ys, lo, hi = [], [], [], []
        for i, task in enumerate(tasks):
            t = results.get((task, precision))
            if t is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            xs.append(x)
            ys.append(t.diff * 100)
            lo.append(max(0.0, (t.diff - (t.ci_low if t.ci_low is not None else t.diff)) * 100))
            hi.append(max(0.0, ((t.ci_high if t.ci_high is not None else t.diff) - t.diff) * 100))
            top = max(0.0, (t.ci_high if t.ci_high is not None else t.diff) * 100)
            ax.annotate(
                t.verdict,
                (x, top),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=7,
            )
        ax.bar(
            xs,
            ys,
            width * 0.9,
            yerr=[lo, hi],
            capsize=3,
            label=precision,
            color=COLORS[j % len(COLORS)],
        )
    for i, task in enumerate(tasks):
        margins = [t.margin for (k, _), t in results.items() if k == task and t.margin]
        if margins:
            ax.hlines(
                -margins[0] * 100,
                i - 0.45,
                i + 0.45,
                colors="#d62728",
                linestyles="dashed",
                linewidth=1.2,
                label="−margin" if i == 0 else None,
            )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel("candidate − reference (pp)")
    reference = ", ".join(sorted({s.reference for s in report.suites}))
    ax.set_title(f"Each task against {reference} (bars: 95 % one-sided interval)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(plt, fig, path)
    return path


def flips_svg(report: Report, path: Path) -> Path:
    tasks, precisions, results = _gated(report)
    plt, fig, ax = _figure(len(tasks))
    width = 0.8 / max(1, len(precisions))
    for j, precision in enumerate(precisions):
        color = COLORS[j % len(COLORS)]
        xs, down, up = [], [], []
        for i, task in enumerate(tasks):
            t = results.get((task, precision))
            if t is None or t.flips_down is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            down.append(-t.flips_down)
            up.append(t.flips_up or 0)
        ax.bar(xs, up, width * 0.9, color=color, label=precision)
        ax.bar(xs, down, width * 0.9, color=color, alpha=0.45, hatch="//")
        for x, d, u in zip(xs, down, up):
            ax.annotate(
                f"−{-d}/+{u}",
                (x, u),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=7,
            )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel("items: lost (below 0) / gained (above 0)")
    ax.set_title("Flips per task: items lost (hatched, below 0) and gained", fontsize=10)
    if precisions:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(plt, fig, path)
    return path


def livebench_relative_svg(rows, reference: str, path: Path) -> Path:
    """Bars of ``rows`` (:class:`quantgate.scoring.livebench.RelativeRow`): official and
    per-question score relative to ``reference`` (= 100 %), the value written on each bar."""
    plt, fig, ax = _figure(len(rows))
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
    _save(plt, fig, path)
    return path
