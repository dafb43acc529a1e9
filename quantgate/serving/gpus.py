"""GPUs: which ones a pytest-xdist worker owns, and when a stopped server has let go of them.

    >>> gpu_slice("gw1", tensor_parallel_size=2, visible=["0", "1", "2", "3"])
    ['2', '3']

Reads ``nvidia-smi`` (present wherever the NVIDIA driver is), so nothing here imports torch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable


class GpuError(RuntimeError):
    """Too few GPUs for the requested slicing, or GPU memory that is never released."""


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all nvidia-smi lists."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = _smi(["-L"])
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def worker_index(worker_id: str | None) -> int:
    """``gw3`` -> 3; the xdist controller or a run without xdist (``master``/None) -> 0."""
    match = re.fullmatch(r"gw(\d+)", worker_id or "")
    return int(match.group(1)) if match else 0


def gpu_slice(
    worker_id: str | None, tensor_parallel_size: int, visible: list[str] | None = None
) -> list[str]:
    """The GPUs of one worker: worker i gets ``visible[i*tp:(i+1)*tp]``."""
    visible = visible_gpus() if visible is None else visible
    index = worker_index(worker_id)
    start, stop = index * tensor_parallel_size, (index + 1) * tensor_parallel_size
    if stop > len(visible):
        workers = len(visible) // tensor_parallel_size
        raise GpuError(
            f"pytest-xdist worker {worker_id or 'gw0'} needs GPUs {start}..{stop - 1} "
            f"(tensor_parallel_size {tensor_parallel_size}) but {len(visible)} are visible "
            f"({','.join(visible) or 'none'}); run with -n {max(workers, 1)} or fewer"
            + ("" if workers else ", or on a machine with more GPUs")
        )
    return visible[start:stop]


def gpu_process_memory() -> dict[int, int]:
    """pid -> MiB of GPU memory, for every process holding GPU memory ({} without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    out = _smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    usage: dict[int, int] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            usage[int(parts[0])] = int(parts[1]) if parts[1].isdigit() else 0
    return usage


def wait_gpu_memory_released(
    pids: Iterable[int], *, timeout: float = 180.0, poll: float = 1.0
) -> float:
    """Wait until none of ``pids`` (a stopped server's process tree) holds GPU memory; returns
    the seconds waited. Starting the next precision's server earlier would fail to allocate."""
    pids = set(pids)
    started = time.monotonic()
    while True:
        holding = {pid: mib for pid, mib in gpu_process_memory().items() if pid in pids}
        if not holding:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise GpuError(
                f"GPU memory still held {timeout:.0f} s after the server stopped: "
                + ", ".join(f"pid {p}: {m} MiB" for p, m in sorted(holding.items()))
            )
        time.sleep(poll)


def _smi(args: list[str]) -> str:
    try:
        return subprocess.run(
            ["nvidia-smi", *args], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise GpuError(f"nvidia-smi {' '.join(args)} failed: {exc}") from exc
