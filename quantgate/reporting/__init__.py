"""The report folder of an accuracy session: ``report.md``, ``report.json``, ``relative.svg``,
``flips.svg``.

    >>> report = build_report(rows, suites, quantgate_dir=root, baselines_dir=baselines)
    >>> folder = write_report(report, report_folder(root))   # root/reports/<UTC time>/
    >>> # later, without a server: python -m quantgate report .quantgate

Every accuracy session writes one (``--report-dir`` chooses the folder; otherwise
``<quantgate-dir>/reports/<UTC timestamp>/``, and ``<quantgate-dir>/reports/latest`` points at
the newest). :func:`rebuild_rows` recomputes a session's rows from the stored runs and the
baselines, so ``python -m quantgate report`` re-renders without a GPU.

- :mod:`.schema`: ``report.json`` as pydantic models (``docs/report-schema.md``);
- :mod:`.build`: rows -> :class:`~.schema.Report`; stored runs -> rows;
- :mod:`.markdown`, :mod:`.charts`: the renderings.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from quantgate.jsonl import atomic_write_text
from quantgate.reporting.build import build_report, rebuild_rows
from quantgate.reporting.schema import SCHEMA_VERSION, Report

FORMATS = ("md", "json", "svg")
__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Report",
    "build_report",
    "load_report",
    "rebuild_rows",
    "report_folder",
    "write_report",
]


def report_folder(root: Path, *, now: datetime | None = None) -> Path:
    """``root/reports/<UTC timestamp>`` (not created)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / "reports" / stamp


def write_report(report: Report, folder: Path, formats: Iterable[str] = FORMATS) -> Path:
    """Write the report's files into ``folder`` (created) and point ``../latest`` at it when the
    folder is one of ``reports/<timestamp>``; returns the folder."""
    from quantgate.reporting.charts import flips_svg, relative_svg
    from quantgate.reporting.markdown import render_markdown

    formats = set(formats)
    unknown = formats - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format {sorted(unknown)}; expected some of {FORMATS}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if "svg" in formats and importlib.util.find_spec("matplotlib") is None:
        formats.discard("svg")  # a machine without matplotlib still gets the text report
        atomic_write_text(folder / "NO-SVG.txt", "matplotlib is not installed: no SVGs\n")
    if "json" in formats:
        atomic_write_text(folder / "report.json", report.model_dump_json(indent=1) + "\n")
    if "md" in formats:
        atomic_write_text(folder / "report.md", render_markdown(report, images="svg" in formats))
    if "svg" in formats:
        relative_svg(report, folder / "relative.svg")
        flips_svg(report, folder / "flips.svg")
    if folder.parent.name == "reports":
        _point_latest(folder)
    return folder


def load_report(folder: Path) -> Report:
    """A report folder's ``report.json``, validated."""
    path = Path(folder) / "report.json"
    return Report.model_validate_json(path.read_text())


def _point_latest(folder: Path) -> None:
    link = folder.parent / "latest"
    tmp = folder.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(folder.name)
        os.replace(tmp, link)
    except OSError:  # no symlinks here: a text file naming the folder
        atomic_write_text(folder.parent / "LATEST", folder.name + "\n")
