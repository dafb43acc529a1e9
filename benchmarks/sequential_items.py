"""How many of a task's items a sequential gate generates (issue 12, item 7), by seeded
simulation: the expected share of items used at no drop, at a drop equal to the margin and at
three times the margin, with the error rates of the sequential and the fixed design on the same
draws.

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantgate.gate import required_n  # noqa: E402
from quantgate.sequential import simulate  # noqa: E402

# name -> (n, margin, discordance): the tiny suite's arith and words, a mid-size task, and a
# task planned for 80 % power at no drop (quantgate.gate.required_n at margin 2 pp, rho 0.1)
SCENARIOS = {
    "tiny arith (n 150, margin 5 pp, rho 0.05)": (150, 0.05, 0.05),
    "tiny words (n 100, margin 6 pp, rho 0.05)": (100, 0.06, 0.05),
    "mid (n 400, margin 3 pp, rho 0.10)": (400, 0.03, 0.10),
}


def planned() -> tuple[int, float, float]:
    return (required_n(0.02, 0.10), 0.02, 0.10)


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
        n, margin, rho = planned()
        scenarios[f"planned (n {n}, margin 2 pp, rho 0.10: 80 % power)"] = (n, margin, rho)
    looks = [int(k) for k in args.looks.split(",")]
    header = (
        f"{'scenario':<52} {'K':>2}  {'drop':>9}  {'share':>6}  {'P(pass) seq/fixed':>17}"
        f"  {'P(fail) seq/fixed':>17}"
    )
    print(f"{args.runs} seeded runs per cell, alpha {args.alpha} (one-sided), seed {args.seed}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for name, (n, margin, rho) in scenarios.items():
        for k in looks:
            for label, drop in (("none", 0.0), ("margin", margin), ("3x margin", 3 * margin)):
                sim = simulate(
                    n=n,
                    margin=margin,
                    looks=k,
                    drop=drop,
                    discordance=rho,
                    alpha=args.alpha,
                    runs=args.runs,
                    seed=args.seed,
                )
                print(
                    f"{name:<52} {k:>2}  {label:>9}  {sim.share_used:>6.1%}"
                    f"  {sim.rate('sequential', 'pass'):>8.4f}/{sim.rate('fixed', 'pass'):<8.4f}"
                    f"  {sim.rate('sequential', 'fail'):>8.4f}/{sim.rate('fixed', 'fail'):<8.4f}"
                )
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
