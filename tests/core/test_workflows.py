"""The GitHub workflows: they run the README's commands, carry the keys the nightly needs, pass
GitHub's workflow schema offline, and their shell steps do what they say when run here."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from string import Template

import pytest
import yaml

from quantgate.suites import load_suite

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly-accuracy.yml"
CI = WORKFLOWS / "ci.yml"
CI_RUN = ROOT / ".ci" / "run"
README = ROOT / "README.md"
SUITES = ROOT / "tests" / "accuracy" / "suites"
# Options the workflow adds to the README's commands: where the results go, nothing else.
OUTPUT_OPTIONS = ("--junitxml", "--report-dir")


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 (PyYAML) reads the key `on` as the boolean true
        data["on"] = data.pop(True)
    return data


def step(job: dict, predicate) -> dict:
    found = [s for s in job["steps"] if predicate(s)]
    assert len(found) == 1, f"{len(found)} matching steps in {[s.get('name') for s in found]}"
    return found[0]


def named(job: dict, name: str) -> dict:
    return step(job, lambda s: s.get("name") == name)


def uses(job: dict, action: str) -> dict:
    return step(job, lambda s: s.get("uses", "").split("@")[0] == action)


def command_words(script: str) -> list[str]:
    """The one command of a `run:` script, continuation lines joined, as the shell splits it."""
    return shlex.split(script.replace("\\\n", " "), comments=True)


def substituted(words: list[str], **env: str) -> list[str]:
    return [Template(word).substitute(env) for word in words]


def readme_commands() -> set[tuple[str, ...]]:
    """The README's `pytest -m accuracy ...` command lines (its indented code blocks)."""
    lines = re.findall(r"^ {4}(pytest -m accuracy .*)$", README.read_text(), re.MULTILINE)
    return {tuple(shlex.split(line, comments=True)) for line in lines}


def split_output_options(words: list[str]) -> tuple[list[str], dict[str, str]]:
    command, outputs = [], {}
    for word in words:
        name, _, value = word.partition("=")
        if name in OUTPUT_OPTIONS:
            assert value, f"{word}: give path-valued options as --opt=value (README)"
            outputs[name] = value
        else:
            command.append(word)
    return command, outputs


def run_script(script: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a `run:` script the way the workflow's `shell: bash` does."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def nightly() -> dict:
    return load_workflow(NIGHTLY)


@pytest.fixture(scope="module")
def ci() -> dict:
    return load_workflow(CI)


# --- the commands are the README's -----------------------------------------------------------


def test_the_nightly_defaults_name_a_real_suite_and_its_quantized_precisions(nightly):
    inputs = nightly["on"]["workflow_dispatch"]["inputs"]
    assert nightly["env"]["SUITE"] == f"${{{{ inputs.suite || '{inputs['suite']['default']}' }}}}"
    assert (
        nightly["env"]["PRECISIONS"]
        == f"${{{{ inputs.precisions || '{inputs['precisions']['default']}' }}}}"
    )
    suite = load_suite(SUITES / f"{inputs['suite']['default']}.yaml")
    defaults = inputs["precisions"]["default"].split()
    assert inputs["suite"]["default"] == "qwen3-32b" and defaults == ["fp8", "nvfp4"]
    assert set(defaults) == set(suite.precisions) - {suite.reference}
    assert suite.reference == "bf16"  # what the refresh job re-takes


def test_the_gate_job_runs_the_readmes_one_suite_one_precision_command(nightly):
    gate = nightly["jobs"]["gate"]
    words = command_words(step(gate, lambda s: s.get("id") == "gate")["run"])
    command, outputs = split_output_options(substituted(words, SUITE="qwen3-32b", PRECISION="fp8"))
    expected = ("pytest", "-m", "accuracy", "--suite", "qwen3-32b", "--precision", "fp8")
    assert tuple(command) == expected
    assert tuple(command) in readme_commands()
    assert outputs == {
        "--junitxml": "reports/qwen3-32b-fp8.xml",
        "--report-dir": "reports/qwen3-32b-fp8",
    }
    assert gate["env"]["PRECISION"] == "${{ matrix.precision }}"


def test_the_refresh_job_runs_the_readmes_baseline_command(nightly):
    refresh = nightly["jobs"]["refresh"]
    words = command_words(step(refresh, lambda s: s.get("id") == "gate")["run"])
    command, outputs = split_output_options(substituted(words, SUITE="qwen3-32b"))
    expected = ("pytest", "-m", "accuracy", "--suite", "qwen3-32b", "--precision", "bf16")
    assert tuple(command) == (*expected, "--snapshot-update")
    assert tuple(command) in readme_commands()
    assert outputs == {
        "--junitxml": "reports/qwen3-32b-bf16.xml",
        "--report-dir": "reports/qwen3-32b-bf16",
    }


def test_both_gpu_jobs_install_the_readmes_gpu_extra(nightly):
    assert 'pip install -e ".[gpu]"' in README.read_text()
    for name in ("gate", "refresh"):
        job = nightly["jobs"][name]
        assert uses(job, "actions/setup-python")["with"]["python-version"] == "3.11"
        script = named(job, "Install quantgate with vLLM")["run"]
        (line,) = [line for line in script.splitlines() if " pip install " in line]
        install = command_words(line)
        at = install.index("install")
        assert install[at - 2 : at] == ["-m", "pip"] and install[-2:] == ["-e", ".[gpu]"]


class _Recorder:
    """Stands in for pytest's parser: records every option name a plugin registers."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def getgroup(self, *args, **kwargs) -> _Recorder:
        return self

    def addoption(self, *names: str, **kwargs) -> None:
        self.names.update(names)

    _addoption = addoption

    def addini(self, *args, **kwargs) -> None:
        pass


def registered_options() -> set[str]:
    """Options of the plugins conftest.py registers, of syrupy and of pytest's JUnit writer."""
    tree = ast.parse((ROOT / "conftest.py").read_text())
    (plugins,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "pytest_plugins"
    ]
    recorder = _Recorder()
    for name in [p for p in plugins if p != "pytester"] + ["syrupy", "_pytest.junitxml"]:
        hook = getattr(importlib.import_module(name), "pytest_addoption", None)
        if hook is not None:
            hook(**{p: recorder for p in inspect.signature(hook).parameters})
    return recorder.names


def test_every_option_the_nightly_passes_is_registered(nightly):
    """A name pytest does not know ends the nightly at once with a usage error."""
    options = registered_options()
    for name in ("gate", "refresh"):
        words = command_words(step(nightly["jobs"][name], lambda s: s.get("id") == "gate")["run"])
        passed = {w.partition("=")[0] for w in words if w.startswith("--")}
        assert passed <= options, f"{name}: not registered: {sorted(passed - options)}"


def test_ci_runs_dot_ci_run_on_a_hosted_runner_with_python_311(ci):
    assert set(ci["on"]) == {"push", "pull_request"}
    (job,) = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert uses(job, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert step(job, lambda s: "run" in s and ".ci/run" in s["run"])["run"] == ".ci/run"
    assert os.stat(CI_RUN).st_mode & stat.S_IXUSR  # run as `.ci/run`, not `bash .ci/run`
    assert job["timeout-minutes"] <= 30


def ci_run_commands() -> list[str]:
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]


def test_dot_ci_run_installs_lints_and_ends_with_the_readmes_test_command():
    text = README.read_text()
    block = text[text.index("## The two commands") : text.index("## Using it")]
    (test_command,) = re.findall(r"^ {4}(bash scripts/setup\.sh && \S+pytest)$", block, re.M)
    install, tests = test_command.split(" && ")
    commands = ci_run_commands()
    assert commands[0] == install and commands[-1] == tests
    for lint in re.findall(r"`(ruff [^`]+)`", block):  # `ruff check .`, `ruff format --check .`
        assert f".venv/bin/{lint}" in commands[1:-1]
    assert (
        ".venv/bin/check-jsonschema --builtin-schema vendor.github-workflows "
        ".github/workflows/*.yml" in commands[1:-1]
    )


def test_the_schema_check_covers_every_workflow_file():
    (check,) = [c for c in ci_run_commands() if "check-jsonschema" in c]
    patterns = [w for w in shlex.split(check) if w.startswith(".github/")]
    files = sorted(p.relative_to(ROOT).as_posix() for p in WORKFLOWS.iterdir())
    assert {"nightly-accuracy.yml", "ci.yml"} <= {Path(f).name for f in files}
    assert all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


def test_the_workflows_pass_githubs_schema_offline_and_a_broken_one_does_not(tmp_path):
    """check-jsonschema's vendored schema, with every proxy pointing nowhere (no network)."""
    broken = tmp_path / "broken.yml"
    broken.write_text(CI.read_text().replace("runs-on:", "runs_on:"))
    offline = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run(
        [
            Path(sys.executable).parent / "check-jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *sorted(WORKFLOWS.glob("*.yml")),
            broken,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **offline, "NO_PROXY": ""},
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}::$.jobs.ci" in result.stdout
    assert str(WORKFLOWS) not in result.stdout + result.stderr  # the real files are valid


# --- the nightly's keys ----------------------------------------------------------------------


def test_the_nightly_is_scheduled_and_dispatchable_with_its_three_inputs(nightly):
    (schedule,) = nightly["on"]["schedule"]
    assert len(schedule["cron"].split()) == 5
    inputs = nightly["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"suite", "precisions", "refresh-baselines"}
    assert inputs["refresh-baselines"] == {
        "description": inputs["refresh-baselines"]["description"],
        "type": "boolean",
        "default": False,
    }
    # a scheduled run (no inputs) gates; only a refresh dispatch refreshes
    assert nightly["jobs"]["gate"]["if"] == "${{ !inputs.refresh-baselines }}"
    assert nightly["jobs"]["refresh"]["if"] == "${{ inputs.refresh-baselines }}"


def test_gpu_jobs_run_on_the_self_hosted_gpu_runner_with_the_hub_cache_and_token(nightly):
    for name in ("gate", "refresh"):
        assert nightly["jobs"][name]["runs-on"] == ["self-hosted", "gpu", "h200"]
    env = nightly["env"]
    assert env["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    (default,) = re.fullmatch(r"\$\{\{ vars\.HF_HOME \|\| '(.+)' \}\}", env["HF_HOME"]).groups()
    assert default.startswith("/")  # outside the workspace, which checkout cleans every run


def test_the_gate_is_a_matrix_over_the_planned_precisions_that_does_not_fail_fast(nightly):
    gate = nightly["jobs"]["gate"]
    assert gate["needs"] == "plan"
    assert gate["strategy"]["fail-fast"] is False
    assert gate["strategy"]["matrix"] == {
        "precision": "${{ fromJSON(needs.plan.outputs.precisions) }}"
    }
    plan = nightly["jobs"]["plan"]
    assert plan["outputs"]["precisions"] == "${{ steps.plan.outputs.precisions }}"


def test_a_gate_fail_fails_the_job_and_the_report_is_kept_anyway(nightly):
    for name, precision in (("gate", "${{ matrix.precision }}"), ("refresh", "bf16")):
        job = nightly["jobs"][name]
        steps = job["steps"]
        at = steps.index(step(job, lambda s: s.get("id") == "gate"))
        gate = steps[at]
        assert "continue-on-error" not in gate and "||" not in gate["run"]  # pytest's status
        assert steps[at + 1 :], "nothing reports after the gate step"
        for later in steps[at + 1 :]:
            if later.get("uses", "").startswith("peter-evans/create-pull-request"):
                assert "if" not in later  # a refused or failing refresh opens no pull request
            elif later.get("name") != "Pull request body":
                assert later["if"] == "always()", later.get("name")
        upload = uses(job, "actions/upload-artifact")
        assert upload["with"]["name"] == f"accuracy-${{{{ env.SUITE }}}}-{precision}"
        paths = upload["with"]["path"].split("\n")
        words = command_words(gate["run"])
        for option in OUTPUT_OPTIONS:  # the JUnit file and the report folder are in the artifact
            (value,) = [w.partition("=")[2] for w in words if w.startswith(option + "=")]
            assert any(value.startswith(p) for p in paths), (option, paths)
        assert f".quantgate/runs/${{{{ env.SUITE }}}}/{precision}/" in paths  # server logs
        assert upload["with"]["include-hidden-files"] is True  # .quantgate/ is a dot folder


def test_a_refresh_opens_a_pull_request_with_only_the_baselines(nightly):
    refresh = nightly["jobs"]["refresh"]
    assert refresh["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert nightly["permissions"] == {"contents": "read"}  # the gate jobs cannot push
    pr = uses(refresh, "peter-evans/create-pull-request")["with"]
    assert pr["add-paths"] == "baselines/" and (ROOT / "baselines").is_dir()
    assert pr["body-path"] == "${{ runner.temp }}/pr-body.md"


def test_no_run_script_expands_an_expression_inline(nightly, ci):
    """Inputs reach scripts through env: a suite name cannot inject shell (GitHub's advice)."""
    for workflow in (nightly, ci):
        for job in workflow["jobs"].values():
            for s in job.get("steps", []):
                assert "${{" not in s.get("run", ""), s.get("name")


# --- the nightly's scripts, run here ---------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [("fp8 nvfp4", ["fp8", "nvfp4"]), (" fp8, nvfp4,", ["fp8", "nvfp4"]), ("bf16", ["bf16"])],
)
def test_the_plan_turns_the_precisions_input_into_the_matrix(nightly, tmp_path, given, expected):
    output = tmp_path / "output"
    script = named(nightly["jobs"]["plan"], "Precisions to gate (the matrix)")["run"]
    result = run_script(
        script, {"SUITE": "qwen3-32b", "PRECISIONS": given, "GITHUB_OUTPUT": str(output)}
    )
    assert result.returncode == 0, result.stderr
    key, _, value = output.read_text().strip().partition("=")
    assert key == "precisions" and json.loads(value) == expected


@pytest.mark.parametrize(
    "suite, precisions, message",
    [
        ("qwen3-32b", "fp8 $(id)", "precision '$(id)'"),
        ("qwen3-32b", " , ", "no precision to gate"),
        ("../x", "fp8", "suite '../x'"),
    ],
)
def test_the_plan_refuses_names_that_are_not_names(nightly, tmp_path, suite, precisions, message):
    script = named(nightly["jobs"]["plan"], "Precisions to gate (the matrix)")["run"]
    output = tmp_path / "output"
    env = {"SUITE": suite, "PRECISIONS": precisions, "GITHUB_OUTPUT": str(output)}
    result = run_script(script, env)
    assert result.returncode == 1 and f"::error::{message}" in result.stdout
    assert not output.exists()


@pytest.mark.parametrize("job", ["gate", "refresh"])
def test_the_summary_appends_the_newest_report_md(nightly, tmp_path, job):
    report_dir = tmp_path / "reports" / "qwen3-32b-fp8"
    (report_dir / "20260101T000000Z").mkdir(parents=True)
    (report_dir / "20260101T000000Z" / "report.md").write_text("# old report\n")
    (report_dir / "20260102T000000Z").mkdir()
    (report_dir / "20260102T000000Z" / "report.md").write_text("# quantgate report\n| fp8 |\n")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {
        "SUITE": "qwen3-32b",
        "PRECISION": "fp8",
        "REPORT_DIR": str(report_dir),
        "OUTCOME": "failure",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = run_script(named(nightly["jobs"][job], "Job summary")["run"], env)
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n## quantgate: qwen3-32b, ")
    assert "(pytest: failure)" in text and "# quantgate report\n| fp8 |\n" in text
    assert "old report" not in text


def test_the_summary_says_so_when_the_session_wrote_no_report(nightly, tmp_path):
    summary = tmp_path / "summary.md"
    env = {
        "SUITE": "qwen3-32b",
        "PRECISION": "fp8",
        "REPORT_DIR": str(tmp_path / "missing"),
        "OUTCOME": "skipped",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = run_script(named(nightly["jobs"]["gate"], "Job summary")["run"], env)
    assert result.returncode == 0, result.stderr
    assert "(pytest: skipped)" in summary.read_text()
    assert f"No report.md under {tmp_path / 'missing'}" in summary.read_text()


DOWNLOAD = "Download the checkpoint into the Hub cache"


def run_download(nightly, tmp_path, suite: str, precision: str) -> tuple[int, str, list[str]]:
    """The download step with `python` this interpreter and `hf` a fake that logs its args."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    log = tmp_path / "hf.log"
    (bin_dir / "hf").write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\n')
    (bin_dir / "hf").chmod(0o755)
    script = named(nightly["jobs"]["gate"], DOWNLOAD)["run"]
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SUITE": suite, "PRECISION": precision}
    result = run_script(script, env)
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stdout + result.stderr, calls


SETUP = ("Install quantgate with vLLM", "Preflight (GPU, vLLM, HF token, Hub cache)", DOWNLOAD)


def test_both_gpu_jobs_set_up_alike(nightly):
    gate, refresh = nightly["jobs"]["gate"], nightly["jobs"]["refresh"]
    assert [named(gate, name) for name in SETUP] == [named(refresh, name) for name in SETUP]
    assert [s.get("name") for s in gate["steps"][:5]] == [None, None, *SETUP]


def test_the_download_step_fetches_the_precisions_checkpoint(nightly, tmp_path):
    returncode, output, calls = run_download(nightly, tmp_path, "qwen3-32b", "fp8")
    assert returncode == 0, output
    assert calls == ["download Qwen/Qwen3-32B-FP8"]


@pytest.mark.slow
def test_the_download_step_skips_tiny_and_names_an_unknown_precision(nightly, tmp_path):
    returncode, output, calls = run_download(nightly, tmp_path / "tiny", "tiny", "fp8")
    assert (returncode, calls) == (0, []) and "tiny://fp8: nothing to download" in output
    returncode, output, calls = run_download(nightly, tmp_path / "bad", "qwen3-32b", "fp4")
    assert returncode != 0 and calls == []
    assert "suite qwen3-32b has no precision 'fp4': bf16, fp8, nvfp4" in output


# --- docs/nightly.md -------------------------------------------------------------------------


def test_docs_nightly_names_what_the_workflow_uses(nightly):
    text = (ROOT / "docs" / "nightly.md").read_text()
    labels = nightly["jobs"]["gate"]["runs-on"]
    assert f"`[{', '.join(labels)}]`" in text
    (hf_home,) = re.findall(r"'(/[^']+)'", nightly["env"]["HF_HOME"])
    for needle in (
        "HF_TOKEN",
        "BASELINES_PR_TOKEN",
        f"`{hf_home}`",
        "--snapshot-update",
        "python -m quantgate report",
        "GITHUB_STEP_SUMMARY",
        nightly["jobs"]["refresh"]["steps"][-1]["with"]["branch"].replace(
            "${{ env.SUITE }}", "<suite>"
        ),
    ):
        assert needle in text, needle
