"""Case planning: which (suite, task, precision) cases a session runs, in which order, and why a
case cannot run here — as plain data, before anything starts.

    >>> suites = select_suites(discover_suites("tests/accuracy/suites"), ["tiny"])  # doctest: +SKIP
    >>> [p.case.id for p in plan_cases(suites, ["bf16", "int2"])]                 # doctest: +SKIP
    ['tiny-arith-bf16', 'tiny-words-bf16', ..., 'tiny-arith-int2', ...]

Cases come grouped by (suite, precision), the reference first (:func:`reference_first`), so one
server serves all of a precision's tasks and only one server holds the accelerator at a time.
A case whose precision or task ``requires`` something missing carries the reason it is skipped
(:func:`unmet_requirements`); a planted broken precision (``expect: fail``) carries
``expect_fail``. Bad selections raise :class:`SelectionError` naming what is available.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quantgate.config import Suite, Task

THROUGHPUT = "throughput"  # the task name of a suite's throughput case
SUITE_TASK = "all"  # the task name of a precision's suite-verdict case (quantgate.family)
REQUIREMENT_TEXT = {"gpu": "gpu (a CUDA GPU and vllm: pip install -e '.[gpu]')"}


class SelectionError(ValueError):
    """A --suite / --precision / option combination that names nothing or cannot work."""


@dataclass(frozen=True)
class Case:
    suite: str
    task: str
    precision: str

    @property
    def id(self) -> str:
        return f"{self.suite}-{self.task}-{self.precision}"

    @property
    def group(self) -> str:
        """The (suite, precision) group: the cases one server serves."""
        return f"{self.suite}-{self.precision}"


@dataclass(frozen=True)
class PlannedCase:
    case: Case
    skip: str | None = None  # the reason it cannot run here
    expect_fail: bool = False  # a planted broken precision: the gate must fail it


def select_suites(suites: Mapping[str, Suite], wanted: Sequence[str], where: str) -> dict:
    """The suites named in ``wanted`` (all when empty); ``where`` is the folder they came from."""
    unknown = sorted(set(wanted) - set(suites))
    if unknown:
        raise SelectionError(
            f"--suite {', '.join(unknown)}: no such suite in {where}; "
            f"available: {', '.join(suites)}"
        )
    return {name: s for name, s in suites.items() if not wanted or name in wanted}


def check_precisions(suites: Mapping[str, Suite], wanted: Sequence[str]) -> None:
    known = {p for s in suites.values() for p in s.precisions}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise SelectionError(
            f"--precision {', '.join(unknown)}: not a precision of the selected "
            f"suites; available: {', '.join(sorted(known))}"
        )


def option_problems(
    *,
    limit: int | None,
    update: bool,
    server_url: str | None,
    precisions: Sequence[str],
    accept_drift: bool = False,
) -> list[str]:
    """Option combinations that cannot work, each as a message with the fix."""
    problems = []
    if accept_drift and not update:
        problems.append(
            "--accept-drift only applies when baselines are written: add --snapshot-update"
        )
    if limit is not None and limit < 1:
        problems.append(f"--limit {limit}: expected a positive number of items (e.g. --limit 20)")
    if limit is not None and update:
        problems.append(
            "--limit with --snapshot-update would store a partial baseline; drop "
            "--limit to refresh baselines"
        )
    if server_url and len(precisions) != 1:
        problems.append(
            "--server-url gates one deployment: name its precision with exactly one "
            "--precision (e.g. --precision fp8)"
        )
    return problems


def reference_first(suite: Suite, wanted: Iterable[str] = ()) -> list[str]:
    """The suite's precisions (those in ``wanted`` when given), the reference first."""
    wanted = set(wanted)
    return [
        p
        for p in sorted(suite.precisions, key=lambda p: p != suite.reference)
        if not wanted or p in wanted
    ]


def plan_cases(suites: Mapping[str, Suite], precisions: Sequence[str] = ()) -> list[PlannedCase]:
    """One case per (suite, task, precision), grouped by precision, the reference first."""
    check_precisions(suites, precisions)
    planned = []
    for suite in suites.values():
        for precision in reference_first(suite, precisions):
            for task_name, task in suite.tasks.items():
                case = Case(suite.name, task_name, precision)
                expect_fail = (
                    suite.precisions[precision].expect == "fail" and precision != suite.reference
                )
                planned.append(
                    PlannedCase(
                        case, task.skip or unmet_requirements(suite, case, task), expect_fail
                    )
                )
    return planned


def plan_throughput_cases(
    suites: Mapping[str, Suite], precisions: Sequence[str] = ()
) -> list[PlannedCase]:
    """One throughput case per (suite, precision) of the suites with a ``throughput:`` section,
    the reference first."""
    return [
        PlannedCase(case, unmet_requirements(suite, case))
        for suite in suites.values()
        if suite.throughput is not None
        for precision in reference_first(suite, precisions)
        for case in [Case(suite.name, THROUGHPUT, precision)]
    ]


def plan_suite_cases(
    suites: Mapping[str, Suite], precisions: Sequence[str] = ()
) -> list[PlannedCase]:
    """One ``<suite>-all-<precision>`` case per candidate precision of a suite with two or more
    tasks: the precision's one verdict across its tasks (:func:`quantgate.family.suite_verdict`),
    run after its task cases; a planted broken precision must FAIL it too."""
    check_precisions(suites, precisions)
    return [
        PlannedCase(
            case,
            unmet_requirements(suite, case),
            suite.precisions[precision].expect == "fail",
        )
        for suite in suites.values()
        for precision in reference_first(suite, precisions)
        if has_suite_verdict(suite, precision)
        for case in [Case(suite.name, SUITE_TASK, precision)]
    ]


def has_suite_verdict(suite: Suite, precision: str) -> bool:
    """Whether ``precision`` gets one verdict across the suite's tasks: a candidate of a suite
    with at least two tasks."""
    return len(suite.tasks) >= 2 and precision != suite.reference


def case_groups(suites: Mapping[str, Suite], precisions: Sequence[str] = ()) -> dict[str, str]:
    """Case id -> (suite, precision) group, for every accuracy and throughput case (ids only:
    no requirement is probed)."""
    check_precisions(suites, precisions)
    groups = {
        Case(name, task, p).id: Case(name, task, p).group
        for name, suite in suites.items()
        for p in reference_first(suite, precisions)
        for task in suite.tasks
    }
    groups.update(
        {
            f"{name}-{task}-{p}": f"{name}-{p}"
            for name, s in suites.items()
            for p in s.precisions
            for task in (THROUGHPUT, SUITE_TASK)
        }
    )
    return groups


def unmet_requirements(suite: Suite, case: Case, task: Task | None = None) -> str | None:
    """One reason naming every unmet requirement of the case's precision (first) and task, or
    None when all are met."""
    reasons = []
    requirements = [(case.precision, suite.precisions[case.precision].requires)]
    if task is not None:
        requirements.append((case.task, task.requires))
    for what, requires in requirements:
        unmet = [REQUIREMENT_TEXT.get(r, r) for r in requires if not requirement_met(r)]
        if unmet:
            reasons.append(f"{what} requires {', '.join(unmet)}")
    return "; ".join(reasons) or None


def requirement_met(requirement: str) -> bool:
    """``env:NAME`` (a variable is set), ``module:NAME`` (importable), ``gpu`` (a CUDA GPU and
    vllm to serve on it)."""
    kind, _, name = requirement.partition(":")
    if kind == "env":
        return bool(os.environ.get(name))
    if kind == "module":
        return importlib.util.find_spec(name) is not None
    if kind == "gpu":
        from quantgate.serving.engines import resolve_engine

        return resolve_engine("auto") == "vllm"
    raise ValueError(f"unknown requirement {requirement!r}")  # the suite schema rules it out


def refresh_command(suite: str, precision: str) -> str:
    """The command that (re)writes a precision's baselines of a suite."""
    return " ".join(
        [
            "pytest",
            "-m",
            "accuracy",
            "--suite",
            shlex.quote(suite),
            "--precision",
            shlex.quote(precision),
            "--snapshot-update",
        ]
    )
