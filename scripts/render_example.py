"""Render the README's example report pictures from a stored report (after a real run of the
tiny suite, or after changing the charts):

    .venv/bin/pytest -m accuracy --suite tiny
    .venv/bin/python scripts/render_example.py                 # .quantgate/reports/latest
    .venv/bin/python scripts/render_example.py docs/example    # re-render the committed one

Copies the folder's report.json into docs/example/ (paths inside the checkout made relative)
and draws relative.svg and flips.svg there from it. The pictures are deterministic (a fixed
svg.hashsalt, no date), so re-rendering the committed report.json gives the committed bytes;
tests/reporting/test_report_folder.py checks it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quantgate.reporting import load_report, write_report

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "example"


def render(source: Path, out: Path = EXAMPLE) -> list[Path]:
    """``source/report.json`` (validated) copied to ``out``, with the two pictures drawn from it."""
    source, out = Path(source), Path(out)
    report = load_report(source)
    out.mkdir(parents=True, exist_ok=True)
    if (source / "report.json").resolve() != (out / "report.json").resolve():
        # paths inside the checkout become relative to it (the example names no one's machine)
        text = (source / "report.json").read_text().replace(f'"{REPO}/', '"')
        (out / "report.json").write_text(text)
    write_report(report, out, ["svg"])
    return [out / "report.json", out / "relative.svg", out / "flips.svg"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Render docs/example/ (report.json, relative.svg, flips.svg) from a report."
    )
    parser.add_argument(
        "report",
        nargs="?",
        type=Path,
        default=Path(".quantgate/reports/latest"),
        help="a report folder holding report.json (default: .quantgate/reports/latest)",
    )
    parser.add_argument("--out", type=Path, default=EXAMPLE, help="default: docs/example")
    args = parser.parse_args(argv)
    for path in render(args.report, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
