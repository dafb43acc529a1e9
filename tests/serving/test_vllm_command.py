"""The vLLM command built from a suite: every field, and vLLM's own argument parser agreeing.

The parser checks run where vllm is importable (a GPU box) and skip with the reason elsewhere;
they cover the suite's precisions under each profile and the commands of the H200 throughput
plans (benchmarks/h200_bench.py), so a flag vLLM 0.26 does not know fails here, not on the GPU.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from quantgate.serving.engines import plan_server
from quantgate.suites import load_suite

REPO = Path(__file__).resolve().parents[2]
QWEN3 = REPO / "tests" / "accuracy" / "suites" / "qwen3-32b.yaml"
HAS_VLLM = importlib.util.find_spec("vllm") is not None
NO_VLLM = "vllm is not installed (GPU boxes: pip install -e '.[gpu]')"
PROFILES = [None, "tp2", "stable", "deterministic"]


def _bench():
    """benchmarks/h200_bench.py as a module (benchmarks/ is scripts, not a package)."""
    if "h200_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "h200_bench", REPO / "benchmarks" / "h200_bench.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["h200_bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["h200_bench"]


BENCH_SPECS = [
    pytest.param(plan, index, id=f"{plan}-{index}")
    for plan, specs in _bench().PLANS.items()
    for index in range(len(specs))
]


def _vllm_parse(argv: list[str]):
    from vllm.entrypoints.openai.cli_args import make_arg_parser

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older layouts
        from vllm.utils import FlexibleArgumentParser
    return make_arg_parser(FlexibleArgumentParser()).parse_args(argv)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def qwen3_plan(tmp_path):
    def plan(precision: str, profile: str | None = None, worker_id: str | None = None):
        return plan_server(
            load_suite(QWEN3, profile),
            precision,
            out_dir=tmp_path,
            cache_dir=tmp_path,
            engine="vllm",
            worker_id=worker_id,
        )

    return plan


def test_every_engine_field_reaches_the_command(qwen3_plan):
    plan = qwen3_plan("fp8")
    argv, v = plan.argv, load_suite(QWEN3).engine.vllm
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == "Qwen/Qwen3-32B-FP8"
    assert _flag(argv, "--served-model-name") == "qwen3-32b-fp8" == plan.served_model
    assert _flag(argv, "--host") == "127.0.0.1" and _flag(argv, "--port") == str(plan.port)
    assert _flag(argv, "--tensor-parallel-size") == str(v.tensor_parallel_size)
    assert _flag(argv, "--max-model-len") == str(v.max_model_len)
    assert _flag(argv, "--gpu-memory-utilization") == str(v.gpu_memory_utilization)
    assert _flag(argv, "--max-num-seqs") == str(v.max_num_seqs)
    assert _flag(argv, "--attention-backend") == "TRITON_ATTN"
    assert ("--enforce-eager" in argv) is v.enforce_eager
    assert ("--disable-custom-all-reduce" in argv) is v.disable_custom_all_reduce
    assert "VLLM_ATTENTION_BACKEND" not in plan.env  # vLLM 0.26 reads the flag, not the variable
    assert plan.env["HF_HUB_OFFLINE"] == "1" and plan.env["VLLM_NO_USAGE_STATS"] == "1"


def test_the_defaults_run_cuda_graphs_and_the_stable_profile_does_not(qwen3_plan):
    argv = qwen3_plan("bf16").argv
    assert _flag(argv, "--max-num-seqs") == "256"
    assert "--enforce-eager" not in argv and "--disable-custom-all-reduce" not in argv
    stable = qwen3_plan("bf16", profile="stable").argv
    assert _flag(stable, "--max-num-seqs") == "8"
    assert "--enforce-eager" in stable and "--disable-custom-all-reduce" in stable
    for other in (argv, stable):
        assert _flag(other, "--max-model-len") == "36864"
        assert _flag(other, "--attention-backend") == "TRITON_ATTN"


def test_the_deterministic_profile_runs_vllm_batch_invariant_and_changes_nothing_else(qwen3_plan):
    default, deterministic = qwen3_plan("bf16"), qwen3_plan("bf16", profile="deterministic")
    assert "VLLM_BATCH_INVARIANT" not in default.env
    assert deterministic.env["VLLM_BATCH_INVARIANT"] == "1"
    ignore_port = [a for a in default.argv if a != str(default.port)]
    assert [a for a in deterministic.argv if a != str(deterministic.port)] == ignore_port
    assert {
        k: v for k, v in deterministic.env.items() if k != "VLLM_BATCH_INVARIANT"
    } == default.env


@pytest.mark.parametrize("plan_name,index", BENCH_SPECS)
def test_the_benchmark_servers_are_the_suites_command_plus_their_changes(
    tmp_path, plan_name, index
):
    bench = _bench()
    spec = bench.PLANS[plan_name][index]
    argv = bench.plan_for(spec, tmp_path / "models", tmp_path).argv
    suite = load_suite(QWEN3, spec.profile)
    v = suite.engine.vllm.model_copy(update=spec.vllm)
    assert _flag(argv, "--model") == str((tmp_path / "models" / spec.model).resolve())
    assert _flag(argv, "--max-model-len") == str(v.max_model_len)
    assert _flag(argv, "--max-num-seqs") == str(v.max_num_seqs)
    assert _flag(argv, "--attention-backend") == v.attention_backend
    assert ("--enforce-eager" in argv) is v.enforce_eager
    assert ("--load-format" in argv) is spec.dummy
    if spec.dummy:
        assert _flag(argv, "--load-format") == "dummy"
    if spec.quantization:
        assert _flag(argv, "--quantization") == spec.quantization
    else:
        assert "--quantization" not in argv
    tail = argv[len(argv) - len(spec.extra_args) - 2 * spec.dummy :]
    assert tail[: len(spec.extra_args)] == list(spec.extra_args)


def test_profile_tp2_and_worker_gpu_slices(qwen3_plan, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    plan = qwen3_plan("bf16", profile="tp2", worker_id="gw1")
    assert _flag(plan.argv, "--tensor-parallel-size") == "2"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_precision_quantization_server_args_and_env(tmp_path):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "model: m\n"
        "engine: {kind: vllm, env: {HF_HOME: /models}, vllm: {extra_args: [--seed, '7']}}\n"
        "precisions:\n  bf16: {checkpoint: org/m}\n"
        "  fp8: {checkpoint: org/m, quantization: fp8, server_args: [--kv-cache-dtype, fp8],"
        " env: {VLLM_LOGGING_LEVEL: DEBUG}}\n"
        "tasks:\n  t: {lmeval_task: x, metric: 'acc,none'}\n"
    )
    plan = plan_server(load_suite(suite_file), "fp8", out_dir=tmp_path, cache_dir=tmp_path)
    assert plan.engine == "vllm"
    assert _flag(plan.argv, "--quantization") == "fp8"
    assert plan.argv[-4:] == ["--seed", "7", "--kv-cache-dtype", "fp8"]
    assert plan.env["HF_HOME"] == "/models" and plan.env["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert [c.__qualname__ for c in plan.checks] == ["models_include(s-fp8)", "chat_warmup"]


def test_quantization_needs_vllm(tmp_path):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "model: m\nengine: {kind: transformers}\nprecisions:\n"
        "  bf16: {checkpoint: org/m, quantization: fp8}\n"
        "tasks:\n  t: {lmeval_task: x, metric: 'acc,none'}\n"
    )
    with pytest.raises(ValueError, match="needs engine vllm"):
        plan_server(load_suite(suite_file), "bf16", out_dir=tmp_path, cache_dir=tmp_path)


def test_each_session_writes_its_own_server_log(tmp_path):
    """Two sessions sharing a --quantgate-dir interleaved one server.log, so a start error's
    log tail could be the other session's server."""
    import subprocess
    import sys

    from quantgate.serving.engines import ServerSlot, session_id

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "model: m\nengine: {kind: transformers}\nprecisions:\n  bf16: {checkpoint: org/m}\n"
        "tasks:\n  t: {lmeval_task: x, metric: 'acc,none'}\n"
    )
    suite = load_suite(suite_file)
    plans = [
        plan_server(suite, "bf16", out_dir=tmp_path, cache_dir=tmp_path, session=name)
        for name in ("a", "b")
    ]
    assert [p.log_path.name for p in plans] == ["server-a.log", "server-b.log"]
    assert plans[0].log_path.parent == tmp_path / "s" / "bf16"
    mine = plan_server(suite, "bf16", out_dir=tmp_path, cache_dir=tmp_path)
    assert mine.log_path.name == f"server-{session_id()}.log"
    other = subprocess.run(
        [sys.executable, "-c", "from quantgate.serving.engines import session_id as s; print(s())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert other != session_id() and re.fullmatch(r"\d{8}T\d{6}Z-\d+", other)
    assert ServerSlot(tmp_path).session == session_id()


@pytest.mark.skipif(not HAS_VLLM, reason=NO_VLLM)
@pytest.mark.parametrize("precision", ["bf16", "fp8", "nvfp4"])
@pytest.mark.parametrize("profile", PROFILES)
def test_vllms_own_parser_accepts_the_command(qwen3_plan, precision, profile):
    plan = qwen3_plan(precision, profile)
    args = _vllm_parse(plan.argv[3:])
    v = load_suite(QWEN3, profile).engine.vllm
    assert args.model == plan.model_path
    assert args.tensor_parallel_size == v.tensor_parallel_size
    assert args.max_model_len == v.max_model_len
    assert args.gpu_memory_utilization == v.gpu_memory_utilization
    assert args.max_num_seqs == v.max_num_seqs
    assert bool(args.enforce_eager) is v.enforce_eager  # unset: vLLM's default (CUDA graphs)
    assert bool(args.disable_custom_all_reduce) is v.disable_custom_all_reduce
    assert str(args.attention_backend).upper().endswith("TRITON_ATTN")
    assert args.served_model_name == [plan.served_model]


@pytest.mark.skipif(not HAS_VLLM, reason=NO_VLLM)
@pytest.mark.parametrize("plan_name,index", BENCH_SPECS)
def test_vllms_own_parser_accepts_the_benchmark_commands(tmp_path, plan_name, index):
    bench = _bench()
    spec = bench.PLANS[plan_name][index]
    args = _vllm_parse(bench.plan_for(spec, tmp_path, tmp_path).argv[3:])
    v = load_suite(QWEN3, spec.profile).engine.vllm.model_copy(update=spec.vllm)
    assert args.max_num_seqs == v.max_num_seqs and args.max_model_len == v.max_model_len
    assert bool(args.enforce_eager) is v.enforce_eager
    assert str(args.attention_backend).upper().endswith(v.attention_backend)
    assert args.load_format == ("dummy" if spec.dummy else "auto")
    assert args.quantization == spec.quantization
    if "--no-enable-prefix-caching" in spec.extra_args:
        assert args.enable_prefix_caching is False
    if "--max-num-batched-tokens" in spec.extra_args:
        wanted = spec.extra_args[spec.extra_args.index("--max-num-batched-tokens") + 1]
        assert args.max_num_batched_tokens == int(wanted)
