"""scripts/device/engines_side_by_side.py: the items two engines score differently, and the
kernels vLLM names in its server logs (the tools of the GPU validation run, issue 11 item 5)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from quantgate.baselines import Baseline
from quantgate.runs import TaskRun

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "engines_side_by_side", REPO / "scripts" / "device" / "engines_side_by_side.py"
)
side = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(side)


def _store(root: Path, task: str, precision: str, scores: dict[str, float]) -> None:
    path = root / "tiny" / task / f"{precision}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = TaskRun(task=task, precision=precision, scores=scores)
    path.write_text(Baseline.from_run(run, {}).to_json())


def test_counts_items_each_engine_alone_gets_right(tmp_path, capsys):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    _store(cpu, "arith", "fp8", {"1": 1.0, "2": 1.0, "3": 0.0, "4": 0.0, "5": 1.0})
    _store(gpu, "arith", "fp8", {"1": 1.0, "2": 0.0, "3": 1.0, "4": 1.0, "5": 1.0})
    _store(cpu, "words", "fp8", {"a": 1.0})  # no GPU baseline: not compared
    (row,) = side.engine_flips(cpu, gpu, "tiny")
    assert (row["task"], row["precision"], row["n"]) == ("arith", "fp8", 5)
    assert (row["left_only"], row["right_only"]) == (1, 2)
    assert (row["left_mean"], row["right_mean"]) == (0.6, 0.8)
    assert side.main([str(cpu), str(gpu)]) == 0
    assert (
        "arith      fp8           5         1          2  60.0% / 80.0%" in capsys.readouterr().out
    )


def test_kernels_named_in_the_server_logs(tmp_path):
    (tmp_path / "fp8").mkdir()
    (tmp_path / "fp8" / "server-1.log").write_text(
        "INFO Using CutlassFp8BlockScaledMMKernel for Fp8LinearMethod\n"
        "INFO Using CutlassFp8BlockScaledMMKernel for Fp8LinearMethod\n"
    )
    (tmp_path / "nvfp4").mkdir()
    (tmp_path / "nvfp4" / "server-1.log").write_text(
        "WARNING Your GPU does not have native support for FP4 computation ... weight-only FP4 "
        "compression will be used leveraging the Marlin kernel (MarlinNvFp4LinearKernel)\n"
    )
    (tmp_path / "bf16").mkdir()
    (tmp_path / "bf16" / "server-1.log").write_text("INFO Starting vLLM server\n")
    assert side.kernels(tmp_path) == {
        "bf16": [],
        "fp8": ["CutlassFp8BlockScaledMMKernel", "Fp8LinearMethod"],
        "nvfp4": ["MarlinNvFp4LinearKernel"],
    }
