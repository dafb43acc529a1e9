"""LiveBench cases through the real plugin (pytester, ``--server-url`` at an in-process server):
dispatch, baselines carrying the official numbers, the LiveBench summary, the skip without
``livebench``."""

from __future__ import annotations

import json

import pytest

# preloaded with those of tests/plugin/conftest.py: the demo projects import them
import quantgate.runners.livebench  # noqa: F401
import quantgate.runners.registry  # noqa: F401
import quantgate.tasks.scoring  # noqa: F401
from quantgate.runners.livebench.preflight import INSTALL, livebench_installed
from tests.support import GATE_PLUGINS, GATE_TEST, tiny_reply, write_suite

INI = "[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    accuracy: gate cases\n"


@pytest.mark.slow
def test_livebench_cases_run_gate_and_report(gate_project, pytester, chat_server):
    suites = gate_project(GATE_PLUGINS, ini=INI, test_lb_gate=GATE_TEST)
    write_suite(suites, gate={"method": "paired", "margin": 0.1})
    server = chat_server(tiny_reply)
    baselines, work = pytester.path / "baselines", pytester.path / "qg"

    def run(precision: str, *args: str):
        return pytester.runpytest(
            "-m",
            "accuracy",
            f"--suites-dir={suites}",
            f"--baselines-dir={baselines}",
            f"--quantgate-dir={work}",
            f"--server-url={server.base_url}",
            "--precision",
            precision,
            *args,
        )

    result = run("bf16", "--snapshot-update")
    result.assert_outcomes(passed=1)
    stored = json.loads((baselines / "lb" / "livebench" / "bf16.json").read_text())
    assert stored["summary"]["n"] == 80
    assert stored["provenance"]["livebench"]["official"] == 1.0
    assert stored["provenance"]["livebench"]["categories"]["math"]["n"] == 36
    assert stored["provenance"]["scorer"] == "quantgate.tasks.scoring:livebench_tiny_score"

    result = run("fp8", "-rs")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*quantgate gate summary*",
            "lb-livebench-fp8*bf16*80*pass",
            "*quantgate LiveBench summary*",
            "lb-livebench-fp8*bf16*100.0*100.0*80*100.0%*+0.0 pp*",
            "lb-livebench-fp8*math*100.0*100.0*36*100.0",
        ]
    )
    assert len(server.bodies) == 160  # 80 answers per precision, each generated once


def test_without_livebench_its_own_scorers_skip_with_the_install_command(
    gate_project, pytester, chat_server
):
    suites = gate_project(GATE_PLUGINS, ini=INI, test_lb_gate=GATE_TEST)
    write_suite(suites, scorer=None)
    server = chat_server(tiny_reply)
    result = pytester.runpytest(
        "-m",
        "accuracy",
        f"--suites-dir={suites}",
        "-rs",
        f"--baselines-dir={pytester.path / 'b'}",
        f"--quantgate-dir={pytester.path / 'qg'}",
        f"--server-url={server.base_url}",
        "--precision",
        "bf16",
    )
    if livebench_installed():  # its scorers do not know the tiny tasks: the preflight says so
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*LiveBench preflight*nothing was generated*",
                "*no LiveBench scorer for task 'arith_product'*",
            ]
        )
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines([f"*LiveBench is not installed*{INSTALL}*"])
    assert server.bodies == []
