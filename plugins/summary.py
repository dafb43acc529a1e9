"""One collector for every row the cases record (verdicts, LiveBench numbers, throughput):
rows travel in reports' ``user_properties``, so pytest-xdist workers' rows arrive too, and the
terminal summary prints the sections :func:`quantgate.report.summary_sections` lays out, then
writes the session's report folder (:mod:`quantgate.reporting`; not on xdist workers)."""

from __future__ import annotations

import pytest

from quantgate.report import ROW_KEYS


class Summary:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, list[dict]] = {key: [] for key in ROW_KEYS}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for key, value in report.user_properties:
                if key in self.rows:
                    self.rows[key].append(value)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from quantgate.report import summary_sections

        for title, text in summary_sections(self.rows):
            terminalreporter.section(title)
            terminalreporter.write_line(text)
        folder = self.write_report()
        if folder is not None:
            terminalreporter.write_line(f"quantgate report: {folder / 'report.md'}")

    def write_report(self):
        """The report folder of this session's accuracy cases (None when none ran)."""
        from plugins.fixtures import SESSION_KEY

        config = self.config
        if hasattr(config, "workerinput") or SESSION_KEY not in config.stash:
            return None  # an xdist worker (its controller writes it), or no case ran
        from quantgate.report import SETUP_ROW

        if not self.rows.get(SETUP_ROW):
            return None
        from pathlib import Path

        from plugins.baselines import baselines_root
        from quantgate.reporting import build_report, report_folder, write_report

        session = config.stash[SESSION_KEY]
        logs = sorted(session.root.glob(f"runs/*/*/server-{session.servers.session}.log"))
        report = build_report(
            self.rows,
            session.suites,
            quantgate_dir=session.root,
            baselines_dir=baselines_root(config).resolve(),
            server_logs=logs,
        )
        given = config.getoption("--report-dir")
        return write_report(report, Path(given) if given else report_folder(session.root))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Summary(config), "quantgate-summary")
