"""How many of a task's items a sequential gate generates (issue 12, item 7), by seeded
simulation: the expected share of items used at no drop, at a drop equal to the margin, at
three and five times the margin and at the drop of the tiny suite's planted int2 (a collapse:
65 pp on arith, 81 pp on words, README), with the error rates of the sequential and the fixed
design on the same draws. The last column says, for each broken scenario (3x the margin or more),
whether the issue's target is met: a broken checkpoint decided on at most 40 % of the items.

    python benchmarks/sequential_items.py                 # the default scenarios, 4000 runs each
    python benchmarks/sequential_items.py --runs 20000 --looks 2,3,4,5,10

Each run is n paired 0/1 items: a flip up with probability ``discordance / 2``, a flip down with
``discordance / 2 + drop``; every look is decided by the real gate (quantgate.gate.compare through
quantgate.sequential.settle, memoised on n, flips down, flips up and alpha), the fixed design by
compare at alpha on all n items. "share" is the mean of (items generated) / n; the fixed design
always uses 100 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quantgate.gate import required_n  # noqa: E402
from quantgate.sequential import simulate  # noqa: E402
from quantgate.suites import load_suite  # noqa: E402

TINY = REPO / "tests" / "accuracy" / "suites" / "tiny.yaml"
# the tiny suite's tasks simulated: task -> (planning discordance, the int2's measured drop), the
# two numbers its file only states in comments (n and the margin are read from the suite)
TINY_TASKS = {"arith": (0.08, 0.653), "words": (0.05, 0.81)}
TARGET = 0.40  # issue 12 item 7: a broken checkpoint decided on <= 40 % of the items


def tiny_scenarios(path: Path = TINY) -> dict[str, tuple[int, float, float, float]]:
    """The tiny suite's arith and words as scenarios: n (the rows of the task's test data
    file) and the margin from the suite, the planning discordance and int2's drop from
    :data:`TINY_TASKS`."""
    suite = load_suite(path)
    scenarios = {}
    for task, (rho, int2) in TINY_TASKS.items():
        data = suite.resolve_path(suite.tasks[task].data_files["test"])
        n = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
        margin = suite.tasks[task].gate.margin
        name = f"tiny {task} (n {n}, margin {margin * 100:g} pp, rho {rho:.2f})"
        scenarios[name] = (n, margin, rho, int2)
    return scenarios


# name -> (n, margin, discordance, the tiny int2's measured drop or None): the tiny suite's
# arith and words, a mid-size task, and (main, unless --no-planned) a task planned for 80 %
# power at no drop (required_n at 2 pp, rho 0.1)
SCENARIOS = {
    **tiny_scenarios(),
    "mid (n 400, margin 3 pp, rho 0.10)": (400, 0.03, 0.10, None),
}


def drops(margin: float, int2: float | None) -> list[tuple[str, float, bool]]:
    """The scenario's drops: none, the margin, 3x and 5x the margin, the tiny int2's; each with
    whether it is broken (3x the margin or more: the rows the target is about)."""
    named = [
        ("none", 0.0),
        ("margin", margin),
        ("3x margin", 3 * margin),
        ("5x margin", 5 * margin),
    ]
    named += [(f"int2 {int2:.0%}", int2)] if int2 is not None else []
    return [(label, drop, drop >= 3 * margin) for label, drop in named]


def planned() -> tuple[int, float, float, None]:
    return (required_n(0.02, 0.10), 0.02, 0.10, None)


def rows(
    scenarios: dict[str, tuple], looks: list[int], *, runs: int, seed: int, alpha: float
) -> Iterator[dict]:
    """One row per scenario, K and drop: the share of items the sequential design used, its and
    the fixed design's P(pass) and P(fail), whether the drop is broken (:func:`drops`) and, for a
    broken one, whether the share meets the <= 40 % target (None for the others)."""
    for name, (n, margin, rho, int2) in scenarios.items():
        for k in looks:
            for label, drop, broken in drops(margin, int2):
                sim = simulate(
                    n=n,
                    margin=margin,
                    looks=k,
                    drop=drop,
                    discordance=rho,
                    alpha=alpha,
                    runs=runs,
                    seed=seed,
                )
                yield {
                    "scenario": name,
                    "looks": k,
                    "drop": label,
                    "broken": broken,
                    "share": sim.share_used,
                    "pass": (sim.rate("sequential", "pass"), sim.rate("fixed", "pass")),
                    "fail": (sim.rate("sequential", "fail"), sim.rate("fixed", "fail")),
                    "target": sim.share_used <= TARGET if broken else None,
                }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4000, help="seeded runs per cell")
    parser.add_argument("--looks", default="3,4", help="comma-separated K values")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--no-planned", action="store_true", help="skip the large planned task")
    args = parser.parse_args(argv)
    scenarios = dict(SCENARIOS)
    if not args.no_planned:
        plan = planned()
        scenarios[f"planned (n {plan[0]}, margin 2 pp, rho 0.10: 80 % power)"] = plan
    looks = [int(k) for k in args.looks.split(",")]
    header = (
        f"{'scenario':<52} {'K':>2}  {'drop':>9}  {'share':>6}  {'P(pass) seq/fixed':>17}"
        f"  {'P(fail) seq/fixed':>17}  {'<= 40 %':>7}"
    )
    print(f"{args.runs} seeded runs per cell, alpha {args.alpha} (one-sided), seed {args.seed}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for row in rows(scenarios, looks, runs=args.runs, seed=args.seed, alpha=args.alpha):
        met = "" if row["target"] is None else "yes" if row["target"] else "no"
        print(
            f"{row['scenario']:<52} {row['looks']:>2}  {row['drop']:>9}  {row['share']:>6.1%}"
            f"  {row['pass'][0]:>8.4f}/{row['pass'][1]:<8.4f}"
            f"  {row['fail'][0]:>8.4f}/{row['fail'][1]:<8.4f}  {met:>7}"
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
