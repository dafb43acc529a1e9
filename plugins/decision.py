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
        )
        self.request.node.user_properties.extend(decision.rows)
        if decision.store:
            assert self.snapshot == decision.baseline  # syrupy writes it with --snapshot-update
        if decision.warning:
            warnings.warn(decision.warning, stacklevel=1)
        if decision.failed:
            raise GateFailed(decision.failed)
        if decision.problems:
            pytest.fail("\n\n".join(decision.problems), pytrace=False)
