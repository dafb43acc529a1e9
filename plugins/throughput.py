"""Throughput cases: one per (suite, precision) of the suites with a ``throughput:`` section.

    def test_throughput(throughput_case, throughput, benchmark):
        bench = throughput(throughput_case)   # its precision's server (shared with the tasks)
        benchmark.pedantic(bench.round, rounds=bench.rounds, iterations=1)
        bench.finish(benchmark)               # extra_info + the session's relative-speed summary

A case is ``Case(suite, "throughput", precision)`` (id ``tiny-throughput-fp8``), planned by
:func:`quantgate.cases.plan_throughput_cases`: it sorts into its precision's group after that
precision's task cases and runs on the same server. Marks: ``accuracy``, ``benchmark``, the
group's ``xdist_group``, and a skip where the precision's ``requires`` are unmet. The session
summary shows each precision's tokens/s and requests/s relative to the suite's reference
(:func:`quantgate.report.throughput_report`).
"""

from __future__ import annotations

from itertools import groupby

import pytest

from plugins.cases import case_of, gate_params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "throughput_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "throughput_case",
            gate_params(metafunc.config, pytest.mark.benchmark, throughput=True),
        )


@pytest.hookimpl(trylast=True)  # after cases.py has made each (suite, precision) group contiguous
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Within each group, the throughput case last: it never runs before a task case of its
    precision, whatever order the test files were given in."""
    out: list[pytest.Item] = []
    for group, run in groupby(items, key=lambda item: getattr(case_of(item), "group", None)):
        run = list(run)
        out += run if group is None else sorted(run, key=_is_throughput)  # stable
    items[:] = out


def _is_throughput(item: pytest.Item) -> bool:
    return "throughput_case" in getattr(getattr(item, "callspec", None), "params", {})


class ThroughputBench:
    """One throughput case for pytest-benchmark: ``round`` is what it times; ``finish`` puts
    the numbers in ``extra_info`` and records the row for the summary."""

    def __init__(self, request: pytest.FixtureRequest, session, case) -> None:
        from quantgate.runs import RunError
        from quantgate.serving.throughput import ThroughputRounds

        self.request, self.case, self.root = request, case, session.root
        self.suite = session.suites[case.suite]
        skip = session.throughput_skip(case)  # e.g. all its tasks came from the cache
        if skip:
            pytest.skip(skip)
        try:
            endpoint = session.endpoint(case)  # started (or reused) before anything is timed
        except RunError as exc:  # the server did not start, or died earlier: its message
            message = f"{case.id}: {exc}"
        else:
            message = None
        if message:
            pytest.fail(message, pytrace=False)
        self.rounds_run = ThroughputRounds(self.suite, endpoint, limit=session.limit, name=case.id)
        self.rounds = self.rounds_run.rounds
        self.round = self.rounds_run.round

    def finish(self, benchmark=None):
        from plugins.summary import row_properties
        from quantgate.report import THROUGHPUT_ROW, throughput_record
        from quantgate.reporting.build import store_throughput

        result = self.rounds_run.result()
        if benchmark is not None:
            benchmark.extra_info.update(
                self.rounds_run.extra_info(), suite=self.case.suite, precision=self.case.precision
            )
        record = throughput_record(
            self.case.suite, self.case.precision, self.suite.reference, result
        )
        self.request.node.user_properties.extend(row_properties([(THROUGHPUT_ROW, record)]))
        store_throughput(self.root, record)  # for python -m quantgate report
        return result


@pytest.fixture
def throughput(request, quantgate_session):
    """``throughput(case) -> ThroughputBench`` on the case's precision's server."""
    return lambda case: ThroughputBench(request, quantgate_session, case)
