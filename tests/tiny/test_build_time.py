"""How long the tiny model and its quantized copies take to build from nothing (the target: at
most 60 s on 2 cores), measured with pytest-benchmark and never asserted::

    pytest tests/tiny/test_build_time.py -m slow --benchmark-save=tiny-build
    pytest tests/tiny/test_build_time.py -m slow --benchmark-compare

``extra_info`` carries the manifest's per-step seconds (training, each precision's writer) and the
load average at the start: on a shared machine the wall time says as much about the neighbours
as about the recipe.
"""

import json
import os

import pytest

from quantgate.tiny.model import PRECISIONS, default_question_files, ensure_tiny_checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.benchmark]


def test_build_from_nothing(benchmark, tmp_path):
    caches = iter(range(10**6))

    def build():
        return ensure_tiny_checkpoints(tmp_path / f"cache-{next(caches)}", default_question_files())

    benchmark.group = "tiny build"
    benchmark.extra_info["load_average_1min"] = os.getloadavg()[0]
    dirs = benchmark.pedantic(build, rounds=1, iterations=1, warmup_rounds=0)
    manifest = json.loads((dirs["bf16"].parent / "manifest.json").read_text())
    benchmark.extra_info.update(
        build_seconds=manifest["build_seconds"], step_seconds=manifest["step_seconds"]
    )
    assert set(dirs) == set(PRECISIONS) and all(d.is_dir() for d in dirs.values())
