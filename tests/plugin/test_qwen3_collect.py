"""The committed qwen3-32b suite through the real plugin: its case ids, and every case skipped
with its reason on a machine without a GPU (a subprocess from the repo root, as a user runs it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test is a pytest subprocess from the repo root

REPO = Path(__file__).resolve().parents[2]
TASKS = [
    "mmlu_pro",
    "gpqa_diamond",
    "math500",
    "aime24",
    "aime24_think",
    "hle",
    "livecodebench",
    "scicode",
    "livebench",
]
PRECISIONS = ["bf16", "fp8", "nvfp4"]  # the reference first: one server per precision
EXPECTED = [f"qwen3-32b-{task}-{precision}" for precision in PRECISIONS for task in TASKS]
GATED = {"gpqa_diamond", "hle"}  # requires env:HF_TOKEN
GPU_REASON = "requires gpu (a CUDA GPU and vllm"
LIVEBENCH = importlib.util.find_spec("livebench") is not None


def pytest_in_repo(
    tmp_path: Path, *args: str, hf_token: str | None = None
) -> tuple[subprocess.CompletedProcess, dict[str, str | None]]:
    """Run ``pytest -m accuracy --suite qwen3-32b ARGS`` from the repo root; returns the process
    and, unless collecting only, each benchmark case's skip message (None: not skipped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTEST_ADDOPTS")}
    if hf_token is not None:
        env["HF_TOKEN"] = hf_token
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "accuracy",
        "--suite",
        "qwen3-32b",
        f"--quantgate-dir={tmp_path / 'qg'}",
        f"--junitxml={report}",
        "tests/accuracy/test_benchmarks.py",
        *args,
    ]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    skips: dict[str, str | None] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "")
            if not name.startswith("test_benchmark["):  # the suite-verdict cases: elsewhere
                continue
            skipped = case.find("skipped")
            skips[name[name.find("[") + 1 : -1]] = (
                None if skipped is None else skipped.get("message", "")
            )
    return proc, skips


def collected_ids(output: str) -> list[str]:
    return [
        line.split("[", 1)[1].rstrip("]")
        for line in output.splitlines()
        if line.startswith("tests/accuracy/test_benchmarks.py::test_benchmark[")
    ]


def test_collect_only_lists_every_task_and_precision(tmp_path):
    proc, _ = pytest_in_repo(tmp_path, "--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert collected_ids(proc.stdout) == EXPECTED


@pytest.mark.parametrize("profile", ["tp2", "stable", "deterministic"])
def test_the_profiles_collect_the_same_cases(tmp_path, profile):
    proc, _ = pytest_in_repo(tmp_path, "--profile", profile, "--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert collected_ids(proc.stdout) == EXPECTED


@pytest.fixture
def no_gpu():
    from quantgate.serving.engines import resolve_engine

    if resolve_engine("auto") == "vllm":
        pytest.skip("this machine has a CUDA GPU and vllm: the qwen3-32b cases would really run")


def test_without_a_gpu_every_case_is_skipped_naming_the_gpu_requirement(tmp_path, no_gpu):
    proc, skips = pytest_in_repo(tmp_path, hf_token="hf_dummy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(skips) == sorted(EXPECTED)
    for case, message in skips.items():
        task, precision = case.removeprefix("qwen3-32b-").rsplit("-", 1)
        assert message is not None, f"{case} was not skipped"
        assert message.startswith(f"{precision} {GPU_REASON}"), (case, message)
        if task == "livebench" and not LIVEBENCH:  # not on PyPI: named too, before any download
            assert message.endswith("; livebench requires module:livebench"), message


def test_without_hf_token_the_gated_tasks_say_so(tmp_path, no_gpu):
    proc, skips = pytest_in_repo(tmp_path, "--profile", "tp2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(skips) == sorted(EXPECTED)
    for case, message in skips.items():
        task = case.removeprefix("qwen3-32b-").rsplit("-", 1)[0]
        assert message is not None, f"{case} was not skipped"
        if task in GATED:
            assert f"{task} requires env:HF_TOKEN" in message
