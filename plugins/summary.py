"""One collector for every row the cases record (verdicts, LiveBench numbers, throughput):
rows travel in reports' ``user_properties``, so pytest-xdist workers' rows arrive too, and the
terminal summary prints the sections :func:`quantgate.report.summary_sections` lays out."""

from __future__ import annotations

import pytest

from quantgate.report import ROW_KEYS


class Summary:
    def __init__(self) -> None:
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


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Summary(), "quantgate-summary")
