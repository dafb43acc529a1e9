"""GPU slicing for pytest-xdist workers and waiting for a stopped server's GPU memory."""

import pytest

from quantgate.serving import gpus
from quantgate.serving.gpus import GpuError, gpu_slice, wait_gpu_memory_released, worker_index

FOUR = ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("worker", "tp", "expected"),
    [
        (None, 1, ["0"]),
        ("master", 2, ["0", "1"]),
        ("gw0", 1, ["0"]),
        ("gw3", 1, ["3"]),
        ("gw0", 2, ["0", "1"]),
        ("gw1", 2, ["2", "3"]),
        ("gw0", 4, FOUR),
    ],
)
def test_each_worker_gets_its_own_gpus(worker, tp, expected):
    assert gpu_slice(worker, tp, FOUR) == expected


def test_slices_of_all_workers_are_disjoint_and_respect_visible_devices():
    visible = ["4", "5", "6", "7"]  # CUDA_VISIBLE_DEVICES=4,5,6,7
    slices = [gpu_slice(f"gw{i}", 2, visible) for i in range(2)]
    assert slices == [["4", "5"], ["6", "7"]]


@pytest.mark.parametrize(
    ("worker", "tp", "message"),
    [
        (
            "gw2",
            2,
            r"worker gw2 needs GPUs 4\.\.5 \(tensor_parallel_size 2\) but 4 are visible "
            r"\(0,1,2,3\); run with -n 2 or fewer",
        ),
        ("gw0", 8, r"needs GPUs 0\.\.7 .* run with -n 1 or fewer, or on a machine with more GPUs"),
    ],
)
def test_too_few_gpus_is_a_clear_error(worker, tp, message):
    with pytest.raises(GpuError, match=message):
        gpu_slice(worker, tp, FOUR)


def test_worker_index():
    assert [worker_index(w) for w in ("gw0", "gw12", "master", None)] == [0, 12, 0, 0]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert gpus.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_gpus() == []


def test_waits_until_the_server_processes_hold_no_gpu_memory(monkeypatch):
    readings = iter([{10: 70000, 11: 500, 99: 100}, {11: 500, 99: 100}, {99: 100}])
    monkeypatch.setattr(gpus, "gpu_process_memory", lambda: next(readings))
    assert wait_gpu_memory_released([10, 11], poll=0.01) >= 0  # 99 is someone else's


def test_memory_never_released_times_out_naming_the_processes(monkeypatch):
    monkeypatch.setattr(gpus, "gpu_process_memory", lambda: {10: 70000})
    with pytest.raises(GpuError, match=r"still held .* pid 10: 70000 MiB"):
        wait_gpu_memory_released([10], timeout=0.05, poll=0.01)
