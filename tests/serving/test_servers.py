"""Server lifecycle: command building, fail-fast starts, timeouts, and teardown that leaves nothing
behind.

Fault injection uses ``tests/fixtures/fake_server.py``; one slow test runs a real
``transformers serve``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from quantgate.config import Suite
from quantgate.serving import engines
from quantgate.serving.engines import ServerPlan, ServerSlot
from quantgate.serving.servers import (
    Server,
    ServerError,
    ServerImpostor,
    ServerStartError,
    ServerStartTimeout,
    chat_warmup,
    free_port,
    http_json,
    listening_pids,
    models_include,
    transformers_serve_command,
    transformers_serve_env,
    vllm_serve_command,
    vllm_serve_env,
)

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_server.py"
REPO = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """No such process, or only a zombie (an orphan's zombie may never be reaped inside a
    container)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def fake(mode: str, tmp_path: Path, **kw) -> Server:
    port = free_port()
    argv = [sys.executable, str(FAKE), mode, "--port", str(port), "--served-model-name", "tiny"]
    kw.setdefault("startup_timeout", 20.0)
    return Server(argv, port=port, served_model="tiny", log_path=tmp_path / f"{mode}.log", **kw)


# ------------------------------------------------------------------------------------ commands


def test_transformers_serve_command():
    argv = transformers_serve_command(
        "/ckpt/bf16", host="127.0.0.1", port=8123, extra_args=["--log-level", "info"]
    )
    assert argv == [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        "/ckpt/bf16",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--device",
        "cpu",
        "--log-level",
        "info",
    ]
    assert transformers_serve_command(Path("/c"), host="h", port=1, device="cuda:0")[-2:] == [
        "--device",
        "cuda:0",
    ]


def test_vllm_serve_command_defaults():
    assert vllm_serve_command("/ckpt", host="127.0.0.1", port=9000) == [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/ckpt",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--tensor-parallel-size",
        "1",
        "--seed",
        "0",
    ]


def test_vllm_serve_command_every_option():
    argv = vllm_serve_command(
        Path("/ckpt/fp8"),
        host="0.0.0.0",
        port=9001,
        served_model_name="model-fp8",
        tensor_parallel_size=4,
        max_model_len=4096,
        gpu_memory_utilization=0.85,
        max_num_seqs=64,
        enforce_eager=True,
        disable_custom_all_reduce=True,
        attention_backend="FLASHINFER",
        quantization="modelopt_fp4",
        dtype="bfloat16",
        seed=1234,
        extra_args=["--kv-cache-dtype", "fp8"],
    )
    assert argv == [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/ckpt/fp8",
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--served-model-name",
        "model-fp8",
        "--dtype",
        "bfloat16",
        "--quantization",
        "modelopt_fp4",
        "--tensor-parallel-size",
        "4",
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.85",
        "--max-num-seqs",
        "64",
        "--attention-backend",
        "FLASHINFER",
        "--seed",
        "1234",
        "--enforce-eager",
        "--disable-custom-all-reduce",
        "--kv-cache-dtype",
        "fp8",
    ]


def test_vllm_serve_command_seed_none_and_flags_off():
    argv = vllm_serve_command(
        "/c", host="h", port=1, seed=None, enforce_eager=False, disable_custom_all_reduce=False
    )
    assert (
        "--seed" not in argv
        and "--enforce-eager" not in argv
        and "--disable-custom-all-reduce" not in argv
    )


def test_transformers_serve_env(tmp_path):
    env = transformers_serve_env(
        tmp_path / "hub" / "cache", base={"PATH": "/bin", "HF_HUB_OFFLINE": "0"}
    )
    assert env["PATH"] == "/bin" and env["HF_HUB_OFFLINE"] == "1"
    cache = Path(env["HF_HUB_CACHE"])
    assert cache.is_dir() and not any(cache.iterdir())


def test_vllm_serve_env():
    env = vllm_serve_env({"A": "1"}, VLLM_CPU_KVCACHE_SPACE="1")
    assert env == {
        "A": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    assert "HF_HUB_OFFLINE" not in vllm_serve_env({}, offline=False)


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# ---------------------------------------------------------------------------------- fault injection


def test_exit_now_fails_fast_with_log_tail(tmp_path):
    server = fake("exit-now", tmp_path, startup_timeout=60)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        server.__enter__()
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert "exited with code 3" in msg
    assert "simulated crash while loading the model" in msg
    assert str(FAKE) in msg and str(server.log_path) in msg
    assert gone(server.pid)


def test_missing_executable_is_a_start_error(tmp_path):
    with pytest.raises(ServerStartError, match="cannot start server.*no-such-server-binary"):
        Server(
            [str(tmp_path / "no-such-server-binary")], port=free_port(), log_path=tmp_path / "x.log"
        ).start()


@pytest.mark.slow
def test_never_healthy_times_out_and_is_cleaned_up(tmp_path):
    server = fake("never-healthy", tmp_path, startup_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(ServerStartTimeout) as info:
        with server:
            pytest.fail("must not get here")
    assert 1.5 <= time.monotonic() - t0 < 6
    assert isinstance(info.value, TimeoutError)
    msg = str(info.value)
    assert "not ready after 1.5 s" in msg and "GET /health" in msg
    assert str(server.log_path) in msg and "listening on" in msg and "503" in msg
    assert gone(server.pid)


def test_healthy_server_serves_and_tears_down(tmp_path):
    with fake("healthy", tmp_path, ready_checks=[models_include(), chat_warmup()]) as s:
        pid = s.pid
        assert s.base_url == f"http://127.0.0.1:{s.port}/v1"
        assert s.served_model == "tiny" and s.log_path == tmp_path / "healthy.log"
        assert 0 < s.startup_seconds < 10
        assert (
            f"# quantgate: ready after {s.startup_seconds:.1f} s (/health and 2 ready checks)"
            in s.log_path.read_text()
        )
        assert http_json(s.base_url + "/models") == (
            200,
            {"object": "list", "data": [{"id": "tiny", "object": "model"}]},
        )
        status, body = http_json(
            s.base_url + "/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": "2+2"}]},
        )
        assert status == 200 and body["choices"][0]["message"]["content"] == "echo: 2+2"
        assert not gone(pid)
    assert gone(pid)
    assert s.process.returncode == -signal.SIGTERM and not s.process.escalated


def test_ready_check_waits_then_times_out(tmp_path):
    server = fake(
        "healthy", tmp_path, startup_timeout=1.0, ready_checks=[models_include("other-name")]
    )
    with pytest.raises(ServerStartTimeout, match=r"still waiting for models_include\(other-name\)"):
        server.start()
    assert gone(server.pid)


def test_failing_ready_check_is_a_start_error(tmp_path):
    def broken(_server):
        raise ValueError("warm-up produced garbage")

    server = fake("healthy", tmp_path, ready_checks=[broken])
    with pytest.raises(ServerStartError, match="warm-up produced garbage") as info:
        server.start()
    assert isinstance(info.value.__cause__, ValueError)
    assert gone(server.pid)


def test_ignore_sigterm_escalates_to_sigkill(tmp_path):
    server = fake("ignore-sigterm", tmp_path, stop_timeout=1.0)
    with server as s:
        pid = s.pid
        t0 = time.monotonic()
    assert 1.0 <= time.monotonic() - t0 < 5
    assert gone(pid)
    assert s.process.escalated and s.process.returncode == -signal.SIGKILL


def test_spawned_children_do_not_survive_teardown(tmp_path):
    with fake("spawn-child", tmp_path) as s:
        line = re.search(r"fake-server: children (\d+) (\d+)", s.log_path.read_text())
        in_group, escaped = int(line[1]), int(line[2])
        assert os.getpgid(in_group) == s.pid  # same group as the server
        assert os.getpgid(escaped) == escaped != s.pid  # left it via setsid
        assert not gone(in_group) and not gone(escaped)
    assert gone(s.pid) and gone(in_group) and gone(escaped)


def test_keyboard_interrupt_inside_with_block_tears_down(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with fake("spawn-child", tmp_path) as s:
            pids = [p.pid for p in psutil.Process(s.pid).children(recursive=True)] + [s.pid]
            raise KeyboardInterrupt
    assert len(pids) == 3 and all(gone(p) for p in pids)


def test_keyboard_interrupt_during_startup_tears_down(tmp_path):
    def interrupted(_server):
        raise KeyboardInterrupt

    server = fake("healthy", tmp_path, ready_checks=[interrupted])
    with pytest.raises(KeyboardInterrupt):
        with server:
            pytest.fail("must not get here")
    assert gone(server.pid)


def test_interrupt_during_graceful_stop_escalates_to_sigkill(tmp_path):
    """A second Ctrl-C while waiting for SIGTERM to work kills the group at once, then
    propagates."""

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            with fake("ignore-sigterm", tmp_path, stop_timeout=30) as s:
                signal.setitimer(signal.ITIMER_REAL, 0.3)
        assert wait_gone(s.pid, 2) and s.process.escalated
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_sigkilled_parent_leaves_no_server_behind(tmp_path):
    """PR_SET_PDEATHSIG: the kernel sends SIGTERM to the server when the process that started it
    dies."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    port = free_port()
    script = textwrap.dedent(f"""
        import sys, time
        from quantgate.serving.servers import Server
        argv = [sys.executable, {str(FAKE)!r}, "healthy", "--port", "{port}"]
        with Server(argv, port={port}, log_path={str(tmp_path / "orphan.log")!r}, startup_timeout=20) as s:
            print(s.pid, flush=True)
            time.sleep(600)
    """)  # noqa: E501
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        server_pid = int(parent.stdout.readline())
        assert not gone(server_pid) and psutil.Process(server_pid).ppid() == parent.pid
        parent.kill()  # SIGKILL: no finally, no __exit__ runs in the parent
        parent.wait(5)
        assert wait_gone(server_pid, 5), "server outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


# ------------------------------------------------------------------------------------ real server


def _tiny_qwen3(path: Path) -> Path:
    """A 2-layer random Qwen3 (hidden 64, head_dim 32) with a byte-level tokenizer (no merges) and
    ChatML."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.save_pretrained(path)

    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(path)
    return path


@pytest.mark.slow
def test_real_transformers_serve(tmp_path):
    pytest.importorskip("fastapi", reason="transformers[serving] extra is not installed")
    pytest.importorskip("uvicorn", reason="transformers[serving] extra is not installed")
    ckpt = str(_tiny_qwen3(tmp_path / "tiny-qwen3"))
    port = free_port()
    server = Server(
        transformers_serve_command(ckpt, host="127.0.0.1", port=port),
        port=port,
        served_model=ckpt,
        env=transformers_serve_env(tmp_path / "hf-cache"),
        log_path=tmp_path / "serve.log",
        startup_timeout=120,
        ready_checks=[chat_warmup()],
    )
    with server as s:
        pid = s.pid
        status, body = http_json(
            s.base_url + "/chat/completions",
            {
                "model": ckpt,
                "messages": [{"role": "user", "content": "Question: 2+2?\nAnswer:"}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=60,
        )
        assert status == 200, body
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["completion_tokens"] <= 8
    assert gone(pid)
    assert not s.process.escalated, s.process.log_tail()
    print(f"transformers serve ready in {s.startup_seconds:.1f} s")


# ------------------------------------------------------------------- who answers, who died


def test_an_impostor_on_the_port_fails_the_start_with_both_pids(tmp_path, scripted_chat):
    """Probe #29: something already listening on the port answered /health and the warm-up in
    0.0 s and got every request, while our server died with "address already in use"."""
    impostor = scripted_chat(lambda body: "not our model", model="tiny")
    port = int(impostor.base_url.rsplit(":", 1)[1].split("/")[0])
    ours = Server(
        [sys.executable, "-c", "import time; time.sleep(60)"],  # slow to load, not listening
        port=port,
        served_model="tiny",
        log_path=tmp_path / "ours.log",
        ready_checks=[chat_warmup()],
    )
    with pytest.raises(ServerImpostor) as info:
        ours.start()
    message = str(info.value)
    assert f"port {port} answers, but not from the server we started (pid {ours.pid})" in message
    # the impostor is this test process: a socket of our own user (or any, as root) has a
    # known owner
    assert f"pid {os.getpid()}" in message
    assert wait_gone(ours.pid, 10)


def test_our_own_listener_passes_the_ownership_check(tmp_path):
    with fake("healthy", tmp_path) as server:
        assert listening_pids(server.port, [server.pid]) == [server.pid]
        assert server.exit_report() is None


SUITE = Suite(
    name="s",
    model="m",
    precisions={"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
    tasks={"t": {"runner": "lmeval", "lmeval_task": "x", "metric": "acc,none"}},
)


@pytest.fixture
def fake_plans(monkeypatch, tmp_path):
    """ServerSlot starts tests/fixtures/fake_server.py in ``mode`` instead of a real server;
    returns the list of precisions it started, in order."""
    starts: list[str] = []

    def use(mode: str) -> list[str]:
        def plan(suite, precision, *, out_dir, cache_dir, worker_id=None, session=None):
            starts.append(precision)
            port = free_port()
            return ServerPlan(
                engine="transformers",
                engine_version=None,
                checkpoint=suite.precisions[precision].checkpoint,
                model_path="tiny",
                argv=[sys.executable, str(FAKE), mode, "--port", str(port)],
                env=dict(os.environ),
                port=port,
                log_path=tmp_path / f"{precision}-{len(starts)}.log",
                startup_timeout=20,
                shutdown_timeout=5,
                served_model="tiny",
            )

        monkeypatch.setattr(engines, "plan_server", plan)
        return starts

    return use


def test_a_server_that_died_fails_its_precision_at_once_and_is_not_restarted(fake_plans, tmp_path):
    starts = fake_plans("healthy")
    slot = ServerSlot(tmp_path)
    endpoint = slot.endpoint(SUITE, "bf16")
    (pid,) = listening_pids(int(endpoint.base_url.rsplit(":", 1)[1].split("/")[0]))
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid, 10)
    report = slot.died()
    assert report is not None and "exited with -9" in report and "after it was started" in report
    assert "last lines of" in report and "listening on" in report  # the log's tail
    with pytest.raises(ServerError) as again:  # the next case of the precision: no new start
        slot.endpoint(SUITE, "bf16")
    assert "exited with -9" in str(again.value) and starts == ["bf16"]
    slot.endpoint(SUITE, "fp8")  # another precision starts its own server
    assert starts == ["bf16", "fp8"] and slot.died() is None
    slot.stop()


def test_a_failed_start_is_remembered_for_the_precision(fake_plans, tmp_path):
    """Probe #8: a failing start was retried once per case (five loads of a 32B checkpoint)."""
    starts = fake_plans("exit-now")
    slot = ServerSlot(tmp_path)
    with pytest.raises(ServerStartError, match="exited with code 3"):
        slot.endpoint(SUITE, "bf16")
    with pytest.raises(ServerError, match="(?s)exited with code 3.*not retried"):
        slot.endpoint(SUITE, "bf16")
    assert starts == ["bf16"]
