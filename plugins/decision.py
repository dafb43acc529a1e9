"""The per-case check in pytest's words: :func:`quantgate.decision.decide_case` decides, this
plugin records the rows, hands the baseline to syrupy, warns, and fails.

    def test_benchmark(accuracy_case, evaluate, baseline):
        baseline.check(accuracy_case, evaluate(accuracy_case))
"""

from __future__ import annotations

import warnings

import pytest

from plugins.cases import GateFailed

__all__ = ["BaselineCheck", "GateFailed"]


class BaselineCheck:
    """``check(case, run)``: what ``baseline`` (the fixture) does with one case's TaskRun."""

    def __init__(self, request: pytest.FixtureRequest, session, snapshot) -> None:
        self.request, self.session, self.snapshot = request, session, snapshot

    def check(self, case, run) -> None:
        from plugins.baselines import baselines_root
        from plugins.summary import row_properties
        from quantgate.decision import decide_case

        config = self.request.config
        decision = decide_case(
            case,
            run,
            self.session.suites[case.suite],
            baselines_root=baselines_root(config),
            update=bool(config.getoption("--snapshot-update", False)),
            limit=self.session.limit,
            accept_drift=config.getoption("--accept-drift"),
            strict_identity=config.getoption("--strict-identity"),
            cached=case.task in self.session.cached_tasks.get(case.group, ()),
        )
        self.request.node.user_properties.extend(row_properties(decision.rows))
        self.request.node.user_properties.extend(junit_properties(decision))
        if decision.verdict is not None:  # for the precision's suite verdict
            self.session.verdicts.setdefault(case.group, {})[case.task] = decision.verdict
        if decision.store:
            assert self.snapshot == decision.baseline  # syrupy writes it with --snapshot-update
        if decision.warning:
            warnings.warn(decision.warning, stacklevel=1)
        if decision.failed:
            raise GateFailed(decision.failed)
        if decision.problems:
            pytest.fail("\n\n".join(decision.problems), pytrace=False)


class SuiteCheck:
    """``check(case)``: the precision's verdict across the tasks gated this session."""

    def __init__(self, request: pytest.FixtureRequest, session) -> None:
        self.request, self.session = request, session

    def check(self, case) -> None:
        from plugins.summary import SUITE_VERDICT_PROPERTY, row_properties
        from quantgate.decision import decide_suite

        decision = decide_suite(
            case, self.session.suites[case.suite], self.session.verdicts.get(case.group, {})
        )
        if decision.skip:
            pytest.skip(decision.skip)
        self.request.node.user_properties.extend(row_properties(decision.rows))
        self.request.node.user_properties.append((SUITE_VERDICT_PROPERTY, decision.outcome))
        if decision.outcome == "fail":
            raise GateFailed(decision.message)
        if decision.outcome != "pass":
            pytest.fail(decision.message, pytrace=False)


def junit_properties(decision) -> list[tuple[str, str]]:
    """Flat ``quantgate.*`` properties for --junitxml: the case's outcome and, per verdict row,
    vs, verdict, n, diff, interval and flips (a dashboard reads them without parsing rows)."""
    from quantgate.report import VERDICT_ROW

    props = [("quantgate.outcome", decision.outcome)]
    for key, record in decision.rows:
        if key != VERDICT_ROW:
            continue
        prefix = f"quantgate.{record['vs']}".replace(" ", "_")
        props.append((f"{prefix}.verdict", str(record.get("verdict"))))
        for name in ("n", "diff", "ci_low", "ci_high", "flips_down", "flips_up", "required_n"):
            if record.get(name) is not None:
                props.append((f"{prefix}.{name}", f"{record[name]:.6g}"))
    return props
