"""One collector for every row the cases record (verdicts, LiveBench numbers, throughput):
rows travel in reports' ``user_properties`` as JSON text (:func:`row_properties`), so
pytest-xdist workers' rows arrive too and ``--junitxml`` shows JSON, never a Python repr. The
terminal summary prints the sections :func:`quantgate.report.summary_sections` lays out, then
writes the session's report folder (:mod:`quantgate.reporting`): in the one process of a plain
run, on the controller under pytest-xdist (its workers hand it their server logs in
``workeroutput``). With ``--junitxml``, each case of a candidate precision also carries that
precision's suite verdict (``quantgate.suite_verdict``), added once the verdict is known."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from quantgate.report import ROW_KEYS, SUITE_ROW

SERVER_LOGS = "quantgate_server_logs"  # a worker's workeroutput key: its session's server logs
SUITE_VERDICT_PROPERTY = "quantgate.suite_verdict"


def row_properties(rows) -> list[tuple[str, str]]:
    """``(key, record)`` rows as ``user_properties``: the record as JSON text."""
    return [(key, json.dumps(record)) for key, record in rows]


class Summary:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, list[dict]] = {key: [] for key in ROW_KEYS}
        self.worker_logs: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for key, value in report.user_properties:
                if key in self.rows:
                    self.rows[key].append(json.loads(value))  # row_properties' JSON text

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """pytest-xdist controller: a worker finished; keep the server logs it names."""
        self.worker_logs += getattr(node, "workeroutput", {}).get(SERVER_LOGS, [])

    @pytest.hookimpl(trylast=True)  # after junitxml has written its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        config = self.config
        if hasattr(config, "workerinput"):  # for the controller's report
            config.workeroutput[SERVER_LOGS] = [str(p) for p in session_logs(config)]
            return
        xmlpath = getattr(config.option, "xmlpath", None)
        if xmlpath and self.rows[SUITE_ROW]:
            # relative to where pytest was started, as junitxml resolved it at configure time
            # (a test may have changed the working directory since)
            given = Path(os.path.expandvars(xmlpath)).expanduser()
            self.add_suite_verdicts(config.invocation_params.dir / given)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from quantgate.report import summary_sections

        for title, text in summary_sections(self.rows):
            terminalreporter.section(title)
            terminalreporter.write_line(text)
        folder = self.write_report()
        if folder is not None:
            terminalreporter.write_line(f"quantgate report: {folder / 'report.md'}")

    def write_report(self):
        """The report folder of this session's accuracy cases (None when none ran, and on an
        xdist worker: its controller writes it from the rows the workers' reports carried)."""
        from quantgate.report import SETUP_ROW

        config = self.config
        if hasattr(config, "workerinput") or not self.rows.get(SETUP_ROW):
            return None
        from plugins.baselines import baselines_root
        from plugins.cases import selected_suites
        from quantgate.reporting import build_report, report_folder, write_report

        root = Path(config.getoption("--quantgate-dir")).resolve()
        logs = sorted({*map(str, session_logs(config)), *self.worker_logs})
        report = build_report(
            self.rows,
            selected_suites(config),
            quantgate_dir=root,
            baselines_dir=baselines_root(config).resolve(),
            server_logs=[Path(log) for log in logs],
        )
        given = config.getoption("--report-dir")
        return write_report(report, Path(given) if given else report_folder(root))

    def add_suite_verdicts(self, path: Path) -> None:
        """Give every case of a precision with a suite verdict that verdict as a property in
        the JUnit file (the verdict is known only after the precision's task cases)."""
        import xml.etree.ElementTree as ET

        from plugins.cases import param_id, selected_suites
        from quantgate.cases import SUITE_TASK, Case, case_groups
        from quantgate.jsonl import atomic_write_text

        if not path.exists():
            return
        verdicts = {
            Case(r["suite"], SUITE_TASK, r["precision"]).group: r["outcome"]
            for r in self.rows[SUITE_ROW]
        }
        groups = case_groups(selected_suites(self.config), self.config.getoption("--precision"))
        root = ET.parse(path).getroot()
        for testcase in root.iter("testcase"):
            outcome = verdicts.get(groups.get(param_id(testcase.get("name", "")), ""))
            if outcome is None:
                continue
            properties = testcase.find("properties")
            if properties is None:
                properties = ET.Element("properties")
                testcase.insert(0, properties)  # JUnit's schema: properties come first
            if not any(p.get("name") == SUITE_VERDICT_PROPERTY for p in properties):
                ET.SubElement(properties, "property", name=SUITE_VERDICT_PROPERTY, value=outcome)
        xml = ET.tostring(root, encoding="unicode")
        atomic_write_text(path, f'<?xml version="1.0" encoding="utf-8"?>{xml}')


# how to list the server logs this process's session wrote: set by the session fixture
# (plugins.fixtures) when the first accuracy case needs it
SESSION_LOGS = pytest.StashKey[Callable[[], list[Path]]]()


def session_logs(config: pytest.Config) -> list[Path]:
    """The server logs this process's session wrote (none where no accuracy case ran)."""
    return config.stash.get(SESSION_LOGS, list)()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Summary(config), "quantgate-summary")
