"""Command-line options of the accuracy gate (one option group, ``quantgate``)."""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("quantgate", "quantgate accuracy gate (pytest -m accuracy)")
    group.addoption(
        "--suite",
        action="append",
        default=[],
        metavar="NAME",
        help="suite to run (tests/accuracy/suites/NAME.yaml); repeatable; default: all suites",
    )
    group.addoption(
        "--precision",
        action="append",
        default=[],
        metavar="NAME",
        help="precision to run (e.g. bf16, fp8, nvfp4); repeatable; "
        "default: all precisions of each suite",
    )
    group.addoption(
        "--profile",
        default=None,
        metavar="NAME",
        help="apply a suite profile (e.g. tp2: the same suite on two GPUs) to every "
        "suite that defines it",
    )
    group.addoption(
        "--server-url",
        default=None,
        metavar="URL",
        help="gate a running OpenAI-compatible endpoint (http://host:port/v1) "
        "instead of starting a server; the served model comes from /v1/models",
    )
    group.addoption(
        "--strict-identity",
        action="store_true",
        default=False,
        help="fail (not only warn) when a --server-url deployment's served model does not "
        "name the suite's checkpoint for the precision",
    )
    group.addoption(
        "--accept-drift",
        action="store_true",
        default=False,
        help="with --snapshot-update: store new baselines even where they fail the gate "
        "against the ones they replace (an intended change of the model or the task)",
    )
    group.addoption(
        "--from-cache",
        action="store_true",
        default=False,
        help="re-gate from the generation caches only: no server is started; a case with "
        "uncached answers fails saying how many, throughput cases skip",
    )
    group.addoption(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N items of every task (smoke runs)",
    )
    group.addoption(
        "--quantgate-dir",
        default=".quantgate",
        metavar="DIR",
        help="output and cache folder: server logs, samples, lm-eval request "
        "cache, the built tiny model (default: .quantgate)",
    )
    group.addoption(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="where the session's report folder goes (report.md, report.json, relative.svg, "
        "flips.svg; default: <quantgate-dir>/reports/<UTC timestamp>)",
    )
    group.addoption(
        "--baselines-dir",
        default=None,
        metavar="DIR",
        help="where baselines live (default: <rootdir>/baselines)",
    )
    group.addoption(
        "--suites-dir",
        default=None,
        metavar="DIR",
        help="where suite files live (default: <rootdir>/tests/accuracy/suites)",
    )
