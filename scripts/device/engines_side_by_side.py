"""The tiny suite on two engines side by side (issue 11, item 5): per task and precision, the
items whose score differs between two baseline folders (e.g. the committed CPU baselines and the
ones a GPU run wrote with --snapshot-update), and the quantized kernels vLLM says it chose in
its server logs.

    python scripts/device/engines_side_by_side.py baselines /tmp/gpu/baselines --suite tiny
    python scripts/device/engines_side_by_side.py --kernels /tmp/gpu/qg/runs/tiny

Flips between engines are expected (other matmul kernels round borderline items differently);
this counts them, it does not judge them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from quantgate.baselines import load_baseline  # noqa: E402

# vLLM names the kernel or linear method it picked for a quantized layer in its start-up log
# ("... CutlassFp8BlockScaledMMKernel for Fp8LinearMethod", "MarlinNvFp4LinearKernel" in a
# warning); the wording changes between versions, the class names do not
KERNEL = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Kernel|LinearMethod)\b")


def engine_flips(left: Path, right: Path, suite: str) -> list[dict]:
    """One row per (task, precision) baseline present in both folders: n shared items, items
    right only on the left / only on the right, and the two means."""
    rows = []
    for path in sorted((Path(left) / suite).glob("*/*.json")):
        other = Path(right) / suite / path.parent.name / path.name
        a, b = load_baseline(path), load_baseline(other)
        if a is None or b is None:
            continue
        shared = sorted(set(a.items) & set(b.items))
        rows.append(
            {
                "task": path.parent.name,
                "precision": path.stem,
                "n": len(shared),
                "left_only": sum(a.items[i] > b.items[i] for i in shared),
                "right_only": sum(b.items[i] > a.items[i] for i in shared),
                "left_mean": sum(a.items[i] for i in shared) / max(len(shared), 1),
                "right_mean": sum(b.items[i] for i in shared) / max(len(shared), 1),
            }
        )
    return rows


def kernels(runs: Path) -> dict[str, list[str]]:
    """Per precision folder under ``runs``: the kernel / linear-method names its server logs
    mention, in order of first mention."""
    found: dict[str, list[str]] = {}
    for log in sorted(Path(runs).glob("*/server-*.log")):
        names = found.setdefault(log.parent.name, [])
        for name in KERNEL.findall(log.read_text(errors="replace")):
            if name not in names:
                names.append(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("left", nargs="?", type=Path, help="a baselines folder (e.g. the CPU's)")
    parser.add_argument("right", nargs="?", type=Path, help="another (e.g. the GPU run's)")
    parser.add_argument("--suite", default="tiny")
    parser.add_argument("--kernels", type=Path, help="a runs/<suite> folder with server logs")
    args = parser.parse_args(argv)
    if args.left and args.right:
        print(f"{'task':<10} {'precision':<10} {'n':>4} {'left only':>9} {'right only':>10}  means")
        for r in engine_flips(args.left, args.right, args.suite):
            print(
                f"{r['task']:<10} {r['precision']:<10} {r['n']:>4} {r['left_only']:>9} "
                f"{r['right_only']:>10}  {r['left_mean']:.1%} / {r['right_mean']:.1%}"
            )
    if args.kernels:
        for precision, names in kernels(args.kernels).items():
            print(f"{precision}: {', '.join(names) or '(no kernel named in its log)'}")
    if not (args.left and args.right) and not args.kernels:
        parser.error("give two baseline folders, --kernels RUNS, or both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
