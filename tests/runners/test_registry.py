"""The runner registry without a server: every runner name maps to a run function, run_case lays
out the documented directories, the error classes have the bases the plugin dispatches on, and a
case whose data is missing fails its checks before the endpoint callable starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quantgate import config
from quantgate.runners import livebench, lmeval, registry
from quantgate.runners.code import MissingData, livecodebench, scicode
from quantgate.runners.livebench import (
    LiveBenchError,
    LiveBenchEvalError,
    LiveBenchNotInstalled,
    PreflightError,
)
from quantgate.runs import Endpoint, NotRunnable, RunError, TaskRun
from quantgate.sandbox import SandboxUnavailable
from quantgate.suites import load_suite

TASKS = {  # runner -> a minimal task of that runner (files relative to the suite file)
    "lmeval": {"runner": "lmeval", "lmeval_task": "tiny_arith", "metric": "exact_match,none"},
    "livebench": {"runner": "livebench", "release": "2024-11-25"},
    "livecodebench": {"runner": "livecodebench", "code": {"path": "problems.jsonl"}},
    "scicode": {"runner": "scicode", "code": {"h5_path": "test_data.h5"}},
}
ENDPOINT = Endpoint("http://127.0.0.1:9/v1", "m")


def suite_with(folder: Path, **tasks: dict):
    spec = {
        "model": "m",
        "precisions": {"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
        "tasks": tasks,
    }
    path = folder / "reg.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_suite(path)


def never_called() -> Endpoint:
    raise AssertionError("the endpoint callable was called: a server would have started")


def test_every_runner_name_of_the_config_has_a_run_function():
    assert set(registry.RUNNERS) == set(config.RUNNERS) == set(registry.CACHE_DIRS)
    assert registry.RUNNERS == {
        "lmeval": lmeval.run,
        "livebench": livebench.run,
        "livecodebench": livecodebench.run,
        "scicode": scicode.run,
    }


@pytest.mark.parametrize(
    "runner, cache",
    [
        ("lmeval", "lmeval"),
        ("livebench", "livebench"),
        ("livecodebench", "code"),
        ("scicode", "code"),
    ],
)
def test_run_case_lays_out_runs_and_cache(runner, cache, tmp_path, monkeypatch):
    calls = []
    made = TaskRun("task", "fp8", {"a": 1.0, "b": 0.0}, provenance={"runner": runner})

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return made

    monkeypatch.setitem(registry.RUNNERS, runner, record)
    suite = suite_with(tmp_path, task=TASKS[runner])
    root = tmp_path / ".quantgate"
    assert registry.run_case(suite, "task", "fp8", ENDPOINT, root=root, limit=3) is made
    stored = root / "runs" / "reg" / "fp8" / "task" / "run.json"  # what a report rebuilds from
    assert TaskRun.from_json(stored.read_text()) == made
    assert calls == [
        (
            ("task", suite, "fp8", ENDPOINT),
            {
                "out_dir": root / "runs" / "reg" / "fp8" / "task",
                "cache_dir": root / "cache" / cache,
                "limit": 3,
                "items": None,
            },
        )
    ]


def test_an_unknown_runner_is_a_value_error(tmp_path):
    suite = suite_with(tmp_path, task=TASKS["lmeval"])
    task = suite.tasks["task"].model_copy(update={"runner": "nope"})  # no suite file can say so
    suite = suite.model_copy(update={"tasks": {"task": task}})
    with pytest.raises(ValueError, match="runner 'nope'"):
        registry.run_case(suite, "task", "fp8", never_called, root=tmp_path)


@pytest.mark.parametrize(
    "error, base, not_base",
    [
        (MissingData, NotRunnable, RunError),  # skip
        (LiveBenchNotInstalled, NotRunnable, RunError),
        (LiveBenchError, RunError, NotRunnable),  # fail
        (LiveBenchEvalError, RunError, NotRunnable),
        (PreflightError, RunError, NotRunnable),
        (SandboxUnavailable, RuntimeError, NotRunnable),  # never run code unisolated: fail
        (NotRunnable, RuntimeError, RunError),
        (RunError, RuntimeError, NotRunnable),
    ],
)
def test_errors_subclass_what_the_plugin_dispatches_on(error, base, not_base):
    assert issubclass(error, base) and not issubclass(error, not_base)


@pytest.mark.parametrize(
    "task, error, message",
    [
        (TASKS["livecodebench"], MissingData, r"code\.path: .*problems\.jsonl not found"),
        (TASKS["scicode"], MissingData, r"numeric targets are not at .*test_data\.h5"),
        ({"runner": "scicode"}, MissingData, r"code\.h5_path is not set"),
        (
            {**TASKS["lmeval"], "data_files": {"test": "absent.jsonl"}},
            FileNotFoundError,
            r"data_files: .*absent\.jsonl.* not found",
        ),
    ],
)
def test_missing_data_fails_before_the_endpoint_is_called(
    task, error, message, tmp_path, monkeypatch
):
    monkeypatch.setenv("QUANTGATE_SANDBOX", "none")  # the data check, wherever isolation fails
    suite = suite_with(tmp_path, task=task)
    with pytest.raises(error, match=message):
        registry.run_case(suite, "task", "fp8", never_called, root=tmp_path / "root")
    assert not (tmp_path / "root" / "runs").exists()
