"""Verdicts: the per-case check, readable failures, and one summary table per session.

Every case records a row in its report's ``user_properties`` (so rows reach the controller
under pytest-xdist too); the terminal summary prints them all.
"""

from __future__ import annotations

import shlex

import pytest

from plugins.baselines import baselines_root
from plugins.cases import Case, GateFailed

ROW_KEY = "quantgate_verdict"
LIVEBENCH_KEY = "quantgate_livebench"


class BaselineCheck:
    """``check(case, run)``: what ``baseline`` (the fixture) does with one case's TaskRun."""

    def __init__(self, request: pytest.FixtureRequest, session, snapshot) -> None:
        self.request, self.session, self.snapshot = request, session, snapshot
        self.update = bool(request.config.getoption("--snapshot-update", False))

    def check(self, case: Case, run) -> None:
        from quantgate.baselines import (Baseline, BaselineError, baseline_path, drift_verdict,
                                         gate_against, host_provenance, load_baseline,
                                         stale_reasons)
        from quantgate.engines import identity

        suite = self.session.suites[case.suite]
        task = suite.tasks[case.task]
        cache = self.session.root / "cache"
        mine = identity(suite, case.task, case.precision, cache)
        new = Baseline.from_run(run, {**mine, **host_provenance()},
                                gate=task.gate.model_dump(mode="json"))
        root = baselines_root(self.request.config)
        own_path = baseline_path(root, case.suite, case.task, case.precision)
        own = load_baseline(own_path)
        problems: list[str] = []

        # the precision's own history: drift within the gate's tolerance, never a stale file
        if own is not None and not self.update:
            reasons = stale_reasons(own, mine)
            if reasons:
                problems.append(f"the baseline at {own_path} is stale ({'; '.join(reasons)}); "
                                f"refresh it with:\n    {self.refresh_command(case)}")
            else:
                drift = drift_verdict(own, new)
                if drift is not None and case.precision == suite.reference:
                    self.record(case, "own history", drift)
                if drift is None or drift.outcome == "fail":
                    problems.append(f"{case.id} drifted from its own baseline {own_path}: "
                                    + (drift.message if drift else "other items"))
        elif own is None and case.precision == suite.reference and not self.update:
            problems.append(f"no baseline at {own_path}; create it with:\n    "
                            f"{self.refresh_command(case)}")
        if self.update or (own is not None and not problems):
            assert self.snapshot == new  # syrupy writes it with --snapshot-update

        # the gate against the reference precision
        if case.precision != suite.reference:
            ref_path = baseline_path(root, case.suite, case.task, suite.reference)
            livebench = self.record_livebench(case, run, suite.reference, ref_path)
            try:
                verdict = gate_against(load_baseline(ref_path), run, task.gate,
                                       identity=identity(suite, case.task, suite.reference, cache),
                                       where=str(ref_path),
                                       refresh=self.refresh_command(case, suite.reference),
                                       subset_ok=self.session.limit is not None)
            except BaselineError as exc:
                problems.append(str(exc))
            else:
                self.record(case, suite.reference, verdict)
                if verdict.outcome != "pass":
                    from quantgate.report import verdict_table

                    table = verdict_table([(case.id, suite.reference, verdict)])
                    text = f"{verdict.message}\n{table}" + (f"\n\n{livebench}" if livebench else "")
                    if verdict.outcome == "fail":
                        raise GateFailed(text)
                    if self.session.limit is None:
                        problems.append(text)
                    else:  # a --limit smoke run checks the chain, it cannot settle the gate
                        import warnings

                        warnings.warn(f"{case.id} (--limit {self.session.limit}): {text}",
                                      stacklevel=1)
        elif own is None or self.update:
            self.record(case, "written" if self.update else "none", None, run=run)
        if case.precision == suite.reference:
            self.record_livebench(case, run)
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)

    def refresh_command(self, case: Case, precision: str | None = None) -> str:
        return " ".join(["pytest", "-m", "accuracy", "--suite", shlex.quote(case.suite),
                         "--precision", shlex.quote(precision or case.precision),
                         "--snapshot-update"])

    def record(self, case: Case, against: str, verdict, run=None) -> None:
        from quantgate.report import verdict_record

        self.request.node.user_properties.append(
            (ROW_KEY, verdict_record(case.id, against, verdict, run=run)))

    def record_livebench(self, case: Case, run, reference: str | None = None,
                         ref_path=None) -> str | None:
        """LiveBench cases: official and per-question numbers (and the reference's, from its
        baseline) for the summary; returns the table for a failure message."""
        stats = run.provenance.get("livebench")
        if not stats:
            return None
        from quantgate.baselines import BaselineError, load_baseline
        from quantgate.report import livebench_record, livebench_table

        ref_stats = None
        if ref_path is not None:
            try:
                stored = load_baseline(ref_path)
            except BaselineError:
                stored = None
            ref_stats = stored.provenance.get("livebench") if stored else None
        record = livebench_record(case.id, stats, reference, ref_stats)
        self.request.node.user_properties.append((LIVEBENCH_KEY, record))
        return livebench_table([record])


class GateSummary:
    """Collects every case's verdict row (from reports, so xdist workers' rows arrive too) and
    prints one table at the end of the session."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.livebench: list[dict] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.rows += [value for key, value in report.user_properties if key == ROW_KEY]
            self.livebench += [v for key, v in report.user_properties if key == LIVEBENCH_KEY]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.rows:
            from quantgate.report import summary_table

            terminalreporter.section("quantgate gate summary")
            terminalreporter.write_line(summary_table(self.rows))
        if self.livebench:
            from quantgate.report import livebench_table

            terminalreporter.section("quantgate LiveBench summary")
            terminalreporter.write_line(livebench_table(self.livebench))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(GateSummary(), "quantgate-summary")
