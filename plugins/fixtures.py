"""Session state and fixtures of the accuracy gate.

    def test_benchmark(accuracy_case, evaluate, baseline):
        run = evaluate(accuracy_case)      # the precision's server (started once) + the runner
        baseline.check(accuracy_case, run)  # gate vs the reference; own history; --snapshot-update

Servers are :class:`quantgate.serving.engines.ServerSlot`'s (one at a time), runs are
:func:`quantgate.runners.registry.run_case`; a run that cannot happen here
(:class:`~quantgate.runs.NotRunnable`) skips, one that broke (:class:`~quantgate.runs.RunError`)
fails. Heavy imports (lm-eval, torch, transformers) happen inside fixture bodies, so
``pytest --help`` and the fast unit tests stay fast.

A candidate's task with ``sequential: {looks: K}`` (or the suite's default) runs chunk after
chunk against the stored reference baseline (:func:`quantgate.sequential.run_candidate`) and
stops generating once PASS or FAIL is settled; not with ``--limit`` or ``--snapshot-update``
(baselines are written from complete runs), nor without a usable reference baseline (the
decision then says what is missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins.cases import case_of, planned, selected_suites, selects_accuracy

SESSION_KEY = pytest.StashKey["GateSession"]()


class GateSession:
    """What the accuracy cases of one pytest session share: suites, the server slot, options."""

    def __init__(self, config: pytest.Config) -> None:
        from quantgate.serving.engines import ServerSlot

        self.suites = selected_suites(config)
        self.root = Path(config.getoption("--quantgate-dir")).resolve()
        self.limit = config.getoption("--limit")
        self.from_cache = config.getoption("--from-cache")
        self.verdicts: dict[str, dict] = {}  # (suite, precision) group -> task -> its Verdict
        # for the throughput cases: per group, the tasks answered without a server, and the
        # groups whose server a case started (or asked for)
        self.cached_tasks: dict[str, list[str]] = {}
        self.served: set[str] = set()
        self.update = bool(config.getoption("--snapshot-update", False))
        self.config = config
        self.servers = ServerSlot(
            self.root,
            server_url=config.getoption("--server-url"),
            worker_id=os.environ.get("PYTEST_XDIST_WORKER"),
        )

    def endpoint(self, case):
        self.served.add(case.group)
        return self.servers.endpoint(self.suites[case.suite], case.precision)

    def throughput_skip(self, case) -> str | None:
        """Why the precision's throughput case does not run (quantgate.decision), or None."""
        from quantgate.decision import throughput_skip

        return throughput_skip(
            case,
            from_cache=self.from_cache,
            cached_tasks=self.cached_tasks.get(case.group, []),
            server_started=case.group in self.served,
            external=bool(self.servers.server_url),
        )

    def run(self, case):
        run, started = self._run(case)
        if not started:  # every answer came from the generation cache
            self.cached_tasks.setdefault(case.group, []).append(case.task)
        return run

    def _run(self, case):
        """(the case's TaskRun, whether its server was asked for)."""
        from quantgate.runners.registry import run_case
        from quantgate.runs import NotRunnable, PendingEndpoint

        suite = self.suites[case.suite]
        started: list[bool] = []

        def start(pending):
            started.append(True)
            self.served.add(case.group)
            return pending()

        try:
            sequential = self._sequential(case, suite)
            pending = self.servers.pending(suite, case.precision)
            if self.from_cache:
                whole = sequential is None  # else a look's chunk of the items ran
                pending = PendingEndpoint(
                    pending.answerer, lambda: refuse_server(case, suite, self.limit, whole)
                )
            source = PendingEndpoint(pending.answerer, lambda: start(pending))
            if sequential is not None:
                from quantgate.jsonl import atomic_write_text
                from quantgate.runners.registry import RUN_FILE, run_dir
                from quantgate.sequential import run_candidate

                design, reference, where = sequential
                run = run_candidate(
                    design,
                    reference,
                    suite.tasks[case.task].gate,
                    lambda items: run_case(
                        suite, case.task, case.precision, source, root=self.root, items=items
                    ),
                    **where,
                )
                # run.json with the look it stopped at: a rebuilt report decides as this one
                folder = run_dir(self.root, suite.name, case.precision, case.task)
                atomic_write_text(folder / RUN_FILE, run.to_json())
                return run, bool(started)
            run = run_case(
                suite, case.task, case.precision, source, root=self.root, limit=self.limit
            )
            return run, bool(started)
        except NotRunnable as exc:  # a package or data file is missing: the reason says which
            skipped, message = True, str(exc)
        except Exception as exc:  # every failure of a run is reported as text, no traceback
            skipped, message = False, f"{case.id}: {self._failure(exc)}"
        # outside the except blocks, so pytest shows the message alone, not the exception chain
        if skipped:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)

    def _sequential(self, case, suite):
        """(design, reference baseline, gate_against's where) for a sequential candidate run,
        or None: run every item."""
        from plugins.baselines import baselines_root
        from quantgate.baselines import (
            BaselineError,
            baseline_path,
            identity,
            load_baseline,
            stale_reasons,
        )
        from quantgate.cases import refresh_command
        from quantgate.sequential import candidate_design, settings_for

        if self.limit is not None or self.update or settings_for(suite, case.task) is None:
            return None
        path = baseline_path(baselines_root(self.config), case.suite, case.task, suite.reference)
        mine = identity(suite, case.task, suite.reference)
        try:
            reference = load_baseline(path)
        except BaselineError:
            return None
        if reference is None or stale_reasons(reference, mine):
            return None
        design = candidate_design(suite, case.task, case.precision, reference)
        if design is None:
            return None
        where = {
            "identity": mine,
            "where": str(path),
            "refresh": refresh_command(case.suite, suite.reference),
        }
        return design, reference, where

    def _failure(self, exc: Exception) -> str:
        """What a run's exception means: the server died (requests failing because it is
        gone), a RunError's message, or else the native traceback — not pytest's AST-based
        repr, which crashes CPython 3.11.7 on long lm-eval/aiohttp tracebacks
        (python/cpython#106905)."""
        from quantgate.runs import RunError

        died = self.servers.died()
        if died is not None:
            return died
        return str(exc) if isinstance(exc, RunError) else native_traceback(exc)


def refuse_server(case, suite, limit=None, whole_task=True):
    """--from-cache: the case needed its server (quantgate.decision.from_cache_refusal)."""
    from quantgate.decision import from_cache_refusal
    from quantgate.runs import RunError

    raise RunError(from_cache_refusal(case, suite, limit=limit, whole_task=whole_task))


def native_traceback(exc: BaseException, keep: int = 60) -> str:
    """The exception's own line, then its traceback as Python prints it (the last ``keep``
    lines)."""
    import traceback

    summary = "".join(traceback.format_exception_only(exc)).strip()
    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    if len(lines) > keep:
        lines = [f"... ({len(lines) - keep} earlier lines left out)", *lines[-keep:]]
    return "\n".join([summary, *lines])


def gate_session(config: pytest.Config) -> GateSession:
    if SESSION_KEY not in config.stash:
        from plugins.summary import SESSION_LOGS
        from quantgate.serving.engines import server_log_name

        session = config.stash[SESSION_KEY] = GateSession(config)
        config.stash[SESSION_LOGS] = lambda: sorted(
            session.root.glob(f"runs/*/*/{server_log_name(session.servers.session)}")
        )
    return config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def quantgate_session(pytestconfig) -> GateSession:
    """The accuracy gate's shared state; stops the last server at the end of the session."""
    session = gate_session(pytestconfig)
    yield session
    session.servers.stop()


@pytest.fixture
def evaluate(quantgate_session):
    """``evaluate(case) -> TaskRun``: per-item scores of one case through its precision's server."""
    return quantgate_session.run


@pytest.fixture
def suite_verdict(request, quantgate_session):
    """``suite_verdict.check(case)``: the precision's one verdict across its gated tasks."""
    from plugins.decision import SuiteCheck

    return SuiteCheck(request, quantgate_session)


@pytest.fixture
def baseline(request, quantgate_session, snapshot):
    """``baseline.check(case, run)``: gate against the reference and keep this precision's own
    baseline (written with --snapshot-update)."""
    from plugins.baselines import BaselineExtension
    from plugins.decision import BaselineCheck

    return BaselineCheck(request, quantgate_session, snapshot.use_extension(BaselineExtension))


def pytest_configure(config: pytest.Config) -> None:
    from quantgate.cases import option_problems

    if config.getoption("--suite") or config.getoption("--precision") or selects_accuracy(config):
        planned(config)  # broken suites, unknown names: a usage error, once, before collection
    problems = option_problems(
        limit=config.getoption("--limit"),
        update=bool(config.getoption("--snapshot-update", False)),
        server_url=config.getoption("--server-url"),
        precisions=config.getoption("--precision"),
        accept_drift=config.getoption("--accept-drift"),
    )
    if problems:
        raise pytest.UsageError("\n".join(problems))


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop a precision's server as soon as its last case is done."""
    case = case_of(item)
    if case is None or SESSION_KEY not in item.config.stash:
        return
    following = case_of(nextitem) if nextitem is not None else None
    if following is None or following.group != case.group:
        item.config.stash[SESSION_KEY].servers.stop()
