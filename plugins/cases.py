"""One test case per (suite, task, precision), ids like ``tiny-arith-nvfp4``.

A test asks for the ``accuracy_case`` fixture to be parametrized::

    pytestmark = pytest.mark.accuracy

    def test_benchmark(accuracy_case, evaluate, baseline):
        baseline.check(accuracy_case, evaluate(accuracy_case))

The plan (which cases, in which order, which skip and why) is :mod:`quantgate.cases`; this
plugin turns it into parameters and marks, keeps each (suite, precision) contiguous, and gives
pytest-xdist a scheduler that keeps each (suite, precision) on one worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.cases import Case, PlannedCase

SUITES_KEY = pytest.StashKey[dict]()
__all__ = ["Case", "GateFailed", "case_of", "selected_suites"]


class GateFailed(AssertionError):
    """The gate's verdict was "fail" (what a planted broken precision must produce); a planted
    broken precision is a strict xfail that only this exception satisfies."""


WARNED_KEY = pytest.StashKey[bool]()


def suites_dir(config: pytest.Config) -> Path:
    given = config.getoption("--suites-dir")
    return Path(given) if given else config.rootpath / "tests" / "accuracy" / "suites"


def selected_suites(config: pytest.Config) -> dict:
    """The suites chosen with --suite (all by default), loaded once per session."""
    if SUITES_KEY not in config.stash:
        from quantgate.cases import SelectionError, select_suites
        from quantgate.config import SuiteError
        from quantgate.suites import discover_suites

        folder = suites_dir(config)
        try:
            suites = discover_suites(folder, config.getoption("--profile"))
            config.stash[SUITES_KEY] = select_suites(suites, config.getoption("--suite"), folder)
        except (SuiteError, SelectionError) as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[SUITES_KEY]


def planned(
    config: pytest.Config, throughput: bool = False, suite: bool = False
) -> list[PlannedCase]:
    """The library's plan for the selected suites and precisions: task cases, throughput cases
    or suite-verdict cases."""
    from quantgate.cases import SelectionError, plan_cases, plan_suite_cases, plan_throughput_cases

    plan = plan_throughput_cases if throughput else plan_suite_cases if suite else plan_cases
    try:
        return plan(selected_suites(config), config.getoption("--precision"))
    except SelectionError as exc:
        raise pytest.UsageError(str(exc)) from None


def params(plan: list[PlannedCase], *extra_marks) -> list:
    """``pytest.param`` per planned case: its id, its group, its skip reason, its xfail."""
    out = []
    for p in plan:
        marks = [pytest.mark.accuracy, *extra_marks, pytest.mark.xdist_group(p.case.group)]
        if p.skip:
            marks.append(pytest.mark.skip(reason=p.skip))
        if p.expect_fail:
            marks.append(
                pytest.mark.xfail(
                    strict=True,
                    raises=GateFailed,
                    reason="planted broken precision: the gate must fail it",
                )
            )
        out.append(pytest.param(p.case, id=p.case.id, marks=marks))
    return out


def selects_accuracy(config: pytest.Config) -> bool:
    """Whether this run's ``-m`` expression keeps accuracy cases (``-m accuracy`` does; the
    project's default ``-m "not accuracy"`` does not)."""
    markexpr = config.getoption("markexpr", "") or ""
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
    except Exception:  # pytest's own error follows; do not mask it
        return "accuracy" in markexpr and "not accuracy" not in markexpr
    try:
        return expression.evaluate(lambda name, **kwargs: name == "accuracy")
    except TypeError:  # pytest < 8.3: the matcher takes the name only
        return expression.evaluate(lambda name: name == "accuracy")


def gate_params(
    config: pytest.Config, *extra_marks, throughput: bool = False, suite: bool = False
) -> list:
    """The parameters of the gate's tests. A run that selects accuracy cases has loaded the
    suites in ``pytest_configure`` (a broken suite is a usage error there, said once); in a run
    that deselects them, a broken suite file must not stop unrelated tests: one deselected
    placeholder stands in for the cases, and a warning says why they are missing."""
    try:
        return params(planned(config, throughput, suite), *extra_marks)
    except pytest.UsageError as exc:
        if selects_accuracy(config):
            raise
        if not config.stash.get(WARNED_KEY, False):
            config.stash[WARNED_KEY] = True
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(f"accuracy cases not collected: {exc}"), stacklevel=2
            )
        marks = [pytest.mark.accuracy, *extra_marks]
        return [pytest.param(None, id="suites-not-loaded", marks=marks)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "accuracy_case" in metafunc.fixturenames:
        metafunc.parametrize("accuracy_case", gate_params(metafunc.config))
    if "suite_case" in metafunc.fixturenames:
        metafunc.parametrize("suite_case", gate_params(metafunc.config, suite=True))


def case_of(item: pytest.Item) -> Case | None:
    """The case of an accuracy item (``accuracy_case``) or a throughput item
    (``throughput_case``, plugins/throughput.py); ``None`` for any other test."""
    values = getattr(getattr(item, "callspec", None), "params", {})
    for name in ("accuracy_case", "suite_case", "throughput_case"):
        if isinstance(values.get(name), Case):  # not an empty parameter set's placeholder
            return values[name]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group accuracy cases by (suite, precision), keeping the order they were generated in."""
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        case = case_of(item)
        if case is not None:
            first_seen.setdefault(case.group, index)

    def key(pair: tuple[int, pytest.Item]) -> tuple[int, int]:
        index, item = pair
        case = case_of(item)
        return (first_seen[case.group] if case else index, index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``-n N``: every (suite, precision) goes whole to one worker, so each server starts once.

    xdist's own ``--dist loadgroup`` reads ``xdist_group`` marks by rewriting node ids, which
    pytest >= 9.2 no longer allows; this scheduler groups by the case ids instead (the marks stay
    for xdist versions that honour them)."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    scope = xdist_scope(config)

    class CaseGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid)

    return CaseGroupScheduling(config, log)


def xdist_scope(config: pytest.Config):
    """``scope(nodeid)``: the (suite, precision) group of an accuracy or throughput case; any
    other test is its own scope."""
    from quantgate.cases import case_groups

    groups = case_groups(selected_suites(config), config.getoption("--precision"))
    return lambda nodeid: groups.get(param_id(nodeid), nodeid)


def param_id(nodeid: str) -> str:
    """The parameter id of a test's node id or name (``test_benchmark[tiny-arith-fp8]`` ->
    ``tiny-arith-fp8``): a case id for the accuracy and throughput cases."""
    return nodeid.rpartition("[")[2].rstrip("]")
