"""The pytester tests' common ground: the library loaded up front, and a demo gate project."""

from __future__ import annotations

from pathlib import Path

import pytest

# pytester's in-process runs drop modules first imported inside them, and numpy cannot be
# imported twice in one process: load the library (numpy, scipy, pydantic) up front. A test
# file adds the modules only its demo projects import.
import quantgate.baselines  # noqa: F401
import quantgate.config  # noqa: F401
import quantgate.report  # noqa: F401
import quantgate.serving.engines  # noqa: F401
from tests.support import DEMO_INI, GATE_TEST, REPO


@pytest.fixture
def gate_project(pytester):
    """``gate_project(conftest, ini=DEMO_INI, **test_files) -> suites folder``: pytester's
    folder made a gate project, with the repository importable (``plugins/``), ``conftest`` as
    its conftest.py, ``test_files`` (default: ``test_demo_gate`` holding
    :data:`~tests.support.GATE_TEST`) and an empty ``suites/`` folder, which it returns."""

    def make(conftest: str, ini: str = DEMO_INI, **test_files: str) -> Path:
        pytester.syspathinsert(REPO)
        pytester.makeini(ini)
        pytester.makeconftest(conftest)
        # not test_benchmarks: tests/accuracy has one
        pytester.makepyfile(**(test_files or {"test_demo_gate": GATE_TEST}))
        return pytester.mkdir("suites")

    return make
