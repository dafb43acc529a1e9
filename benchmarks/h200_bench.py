"""The H200 throughput plans: vLLM servers of the Qwen3-32B shape (dummy weights) started from the
suite's own settings, each measured with benchmarks/throughput.py's clients; one plan per device
call (benchmarks/h200_run.sh runs it).

    python3 benchmarks/h200_bench.py --plan harness --models .device-kit/models --out $OUT

Plans (each fits one 10-minute call: <= 3 server starts; the 32B shape's took 50-190 s, the
deterministic profile's first 307 s on an H100; a server that would overrun is skipped):

- ``harness``: the suite's new defaults, BF16: direct vs ChatClient vs lm-eval at concurrency 8 /
  64 / 256 (1600-token prompts, 128 output tokens, ignore_eos), the noise floor at 64, the
  5-shot-like shared-prefix workload (prefix caching on, vLLM's default).
- ``invariant-clients``: the deterministic profile (``VLLM_BATCH_INVARIANT=1``) against the
  suite's defaults on the same prompts (the mode's cost at 32B); the three clients at 256
  concurrent with 800-token prompts (256 sequences within an H200's KV cache); FlashAttention 3
  against TRITON_ATTN on those prompts. Prefix caching off throughout.
- ``defaults-clients``: ``invariant-clients`` after its first server (the suite's defaults at 64,
  the three clients at 256, FA3), for a call after one that measured the deterministic profile.
- ``fa3``: FlashAttention 3 against TRITON_ATTN alone, the same 800-token prompts at 256;
  ``fa3-alone``: FA3's server only, for a short call on an H100 (the TRITON_ATTN row is
  ``defaults-clients``').
- ``fp8-online``: ``--quantization fp8`` (online, per-tensor) at 256 and its noise floor at 64.
- ``settings``: the suite's defaults and the same server with prefix caching off, each on unique
  and on shared-prefix (5-shot-like) prompts at 256 concurrent; the noise floor at 256 (prefix
  caching off: batching alone). One call, so the comparison needs no other session's numbers.
- ``fp8-block``: the block-FP8 config (the suite's fp8 checkpoint format, Qwen3-32B-FP8's
  quantization_config) at 64 and 256, where a call has room.
- ``noise-256``: ``settings``' noise floor alone, where a call has room for one server.
- ``tiny-noise`` / ``tiny-invariant``: the tiny model (real trained weights, fits any GPU) at
  the suite's settings: its noise floor at 64 and 256, then the same with
  ``VLLM_BATCH_INVARIANT=1`` and the mode's throughput against the default mode.

The ``stable`` profile is not a plan: it is the eager / 8-sequence row measured on 2026-12-01
(docs/performance.md, section 1).

Every server is the command quantgate itself would start for the suite's bf16 precision
(:func:`quantgate.serving.engines.plan_server`), with the model folder replaced by a dummy one
and ``--load-format dummy`` added, then the plan's changes. A server that fails to start is
recorded and the plan goes on; what would overrun ``--budget-s`` is skipped and said so.
Results: ``<plan>.json`` (records), ``<plan>.md`` (tables), ``<plan>-servers.txt`` (the lines of
each server log that say what vLLM chose, and its tail) in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUITE = REPO / "tests" / "accuracy" / "suites" / "qwen3-32b.yaml"
if importlib.util.find_spec("quantgate") is None:  # run as a script from a bare checkout
    sys.path.insert(0, str(REPO))


def _throughput_module():
    """benchmarks/throughput.py (a script folder, not a package) under a name of its own."""
    name = "quantgate_benchmarks_throughput"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "throughput.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tp = _throughput_module()

ALL = ("direct", "chatclient", "lmeval")


@dataclass(frozen=True)
class Bench:
    """One measurement on a running server."""

    kind: str  # throughput | noise
    concurrency: int
    requests: int
    clients: tuple[str, ...] = ("direct",)
    workload: str = "unique"  # unique | fewshot (14 shared prefixes of 1300 tokens)
    prompt_tokens: int = 1600
    max_tokens: int = 128
    estimate_s: float = 60.0  # from the rates seen on the H200 (device README); for the budget


@dataclass(frozen=True)
class ServerSpec:
    """One server: the suite (``profile``) plus changes; ``model`` a folder under --models."""

    label: str
    benches: tuple[Bench, ...]
    model: str = "qwen3-32b-dummy"
    profile: str | None = None
    quantization: str | None = None
    vllm: dict[str, Any] = field(default_factory=dict)  # VllmArgs fields
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    dummy: bool = True  # --load-format dummy
    start_estimate_s: float = 120.0


def _t(c, n, s, **kw) -> Bench:
    return Bench("throughput", c, n, estimate_s=s, **kw)


def _n(c, n, s, **kw) -> Bench:
    return Bench("noise", c, n, estimate_s=s, **kw)


def _tiny(label: str, benches: tuple[Bench, ...], **kw) -> ServerSpec:
    """The tiny model (real trained weights, any GPU) under the suite's settings, its real
    weights loaded (no dummy), in a 512-token context."""
    return ServerSpec(
        label,
        benches,
        model="tiny-bf16",
        vllm={"max_model_len": 512, "gpu_memory_utilization": 0.3},
        dummy=False,
        start_estimate_s=70.0,
        **kw,
    )


def _tiny_noise() -> tuple[Bench, ...]:
    return (
        _n(64, 128, 10, prompt_tokens=200, max_tokens=64),
        _n(256, 256, 15, prompt_tokens=200, max_tokens=64),
    )


NO_PREFIX_CACHING = ("--no-enable-prefix-caching",)  # a later run cannot reuse an earlier prefill


def _defaults_clients() -> ServerSpec:
    """The suite's defaults without prefix caching: the deterministic profile's 64-prompt
    counterpart, then the three clients at 256 concurrent on 800-token prompts."""
    return ServerSpec(
        "bf16 suite defaults, no prefix caching",
        (_t(64, 64, 35), _t(256, 256, 140, clients=ALL, prompt_tokens=800)),
        extra_args=NO_PREFIX_CACHING,
        start_estimate_s=150.0,
    )


def _fa3() -> ServerSpec:
    """FlashAttention 3 in TRITON_ATTN's place, on the clients' 800-token prompts at 256."""
    return ServerSpec(
        "FLASH_ATTN (FA3), no prefix caching",
        (_t(256, 256, 50, prompt_tokens=800),),
        vllm={"attention_backend": "FLASH_ATTN"},
        extra_args=NO_PREFIX_CACHING,
        start_estimate_s=100.0,
    )


# Estimates: BF16 defaults ~2.3 req/s at 8, ~5.1 at 64, ~5.3 at 256 (1600/128); eager + 8 seqs
# 0.85 req/s; x3 where all three clients run. Each plan fits ~540 s; the last server of a plan is
# the one to lose when starts are slow (the budget skips it and says so).
PLANS: dict[str, tuple[ServerSpec, ...]] = {
    "harness": (
        ServerSpec(
            "suite defaults",
            (
                _t(8, 24, 35, clients=ALL),
                _t(64, 128, 80, clients=ALL),
                _t(256, 256, 150, clients=ALL),
                _n(64, 128, 55),
                _t(256, 256, 40, workload="fewshot"),
            ),
        ),
    ),
    # the three clients without prefix caching (identical prompts would be prefilled once, for
    # the first client only) and below the KV-cache capacity (256 x 1728 tokens preempts)
    "harness-fair": (
        ServerSpec(
            "suite defaults, no prefix caching",
            (
                _t(8, 24, 35, clients=ALL),
                _t(64, 128, 80, clients=ALL),
                _n(64, 128, 55),
            ),
            extra_args=NO_PREFIX_CACHING,
        ),
    ),
    # in the order it matters, for one call: batch-invariant mode's cost at the 32B shape (the
    # deterministic profile against the suite's defaults, the same 64 prompts at 64 concurrent,
    # prefix caching off on both so that the one flag differs); the three clients at 256
    # concurrent (800-token prompts: 256 sequences within an H200's KV cache; prefix caching
    # off, or a later client would reuse the prefill of an earlier one's identical prompts);
    # last, FlashAttention 3 against TRITON_ATTN on those 800-token prompts (the server the
    # budget skips first). On an H100 (2026-12-07) only the first server measured: its start
    # took 307 s
    "invariant-clients": (
        ServerSpec(
            "bf16 batch-invariant (--profile deterministic), no prefix caching",
            (_t(64, 64, 90),),
            profile="deterministic",
            extra_args=NO_PREFIX_CACHING,
        ),
        _defaults_clients(),
        _fa3(),
    ),
    # invariant-clients after its first server, for a call after one that ran that server
    "defaults-clients": (_defaults_clients(), _fa3()),
    # FA3 against TRITON_ATTN alone, each on the same 800-token prompts at 256 in one call (in
    # defaults-clients the budget skipped FA3 after its start on an H100, 2026-12-07)
    "fa3": (replace(_defaults_clients(), benches=_fa3().benches), _fa3()),
    # FA3 alone, for a call too short for two servers: compared with defaults-clients' direct row
    # at 256 (774.21 tok/s on an H100, 2026-12-07; its 64-concurrent row repeated on a second
    # H100 machine within 1 %), so only on an H100
    "fa3-alone": (_fa3(),),
    # online FP8 (fp8_online's server) at 256 and its noise floor at 64: its activation scales
    # are dynamic per tensor, so they span the whole batch
    "fp8-online": (
        ServerSpec(
            "fp8 online",
            (_t(256, 256, 60), _n(64, 128, 60)),
            quantization="fp8",
            start_estimate_s=80.0,
        ),
    ),
    # the tiny model alone (fits any GPU): its noise floor at 64 and 256 concurrent
    "tiny-noise": (_tiny("tiny bf16, suite defaults", _tiny_noise()),),
    # batch-invariant mode on the tiny model: does it make two runs identical, at what cost
    "tiny-invariant": (
        _tiny(
            "tiny bf16, VLLM_BATCH_INVARIANT=1",
            (_t(256, 256, 15, prompt_tokens=200, max_tokens=64), *_tiny_noise()),
            env={"VLLM_BATCH_INVARIANT": "1"},
        ),
        _tiny("tiny bf16, suite defaults", (_t(256, 256, 15, prompt_tokens=200, max_tokens=64),)),
    ),
    # one call: prefix caching on (the suite) and off, on unique and on 5-shot-like prompts; the
    # noise floor at the suite's 256 concurrent with batching the only difference between runs
    "settings": (
        ServerSpec(
            "suite defaults",
            (_t(256, 256, 50), _t(256, 256, 45, workload="fewshot")),
        ),
        ServerSpec(
            "no prefix caching",
            (
                _t(256, 256, 50),
                _t(256, 256, 50, workload="fewshot"),
                _n(256, 256, 80, prompt_tokens=800),
            ),
            extra_args=NO_PREFIX_CACHING,
        ),
    ),
    # the settings plan's last measurement alone, where a call has room for one server
    "noise-256": (
        ServerSpec(
            "no prefix caching",
            (_n(256, 256, 80, prompt_tokens=800),),
            extra_args=NO_PREFIX_CACHING,
            start_estimate_s=60.0,
        ),
    ),
    # not in a call of its own: block FP8 at 256 was measured on 2026-12-01 (541 tok/s)
    "fp8-block": (
        ServerSpec(
            "fp8 block (Qwen3-32B-FP8 format)",
            (_t(64, 128, 30), _t(256, 256, 65)),
            model="qwen3-32b-fp8-block-dummy",
        ),
    ),
}


def plan_for(spec: ServerSpec, models: Path, out: Path):
    """quantgate's server plan for the suite's bf16 precision, with ``spec``'s changes."""
    from quantgate.serving.engines import plan_server
    from quantgate.suites import load_suite

    suite = load_suite(SUITE, spec.profile)
    vllm = suite.engine.vllm.model_copy(update=spec.vllm)
    engine = suite.engine.model_copy(
        update={"vllm": vllm, "env": {**suite.engine.env, **spec.env}, "startup_timeout": 600.0}
    )
    args = [*spec.extra_args, *(["--load-format", "dummy"] if spec.dummy else [])]
    precision = suite.precisions["bf16"].model_copy(
        update={
            "checkpoint": str((models / spec.model).resolve()),
            "quantization": spec.quantization,
            "server_args": args,
        }
    )
    suite = suite.model_copy(
        update={"engine": engine, "precisions": {**suite.precisions, "bf16": precision}}
    )
    return plan_server(suite, "bf16", out_dir=out, cache_dir=out, engine="vllm")


def env_set(plan) -> dict[str, str]:
    """The variables the server's environment sets beyond this process's own: the suite's and
    its profile's (the deterministic profile's VLLM_BATCH_INVARIANT) and the spec's."""
    return {k: v for k, v in sorted(plan.env.items()) if os.environ.get(k) != v}


def _smi() -> str:
    try:
        return subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi: {exc}"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def _wait_gpu_idle(limit_mib: int = 2048, timeout: float = 90.0) -> None:
    """After a server stopped: until the GPU's used memory is small again (the next vLLM checks
    that 0.95 of the GPU is free); quantgate's own wait covers the server's pids only."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            used = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return  # no nvidia-smi (a CPU test): nothing to wait for
        if not used or all(u.isdigit() and int(u) < limit_mib for u in used):
            return
        time.sleep(2)


KEY_LINES = (
    "max_num_batched_tokens",
    "Maximum concurrency",
    "GPU KV cache size",
    "KV cache",
    "CUDA graph",
    "Graph capturing",
    "batch invariant",
    "Batch invariant",
    "Using ",
    "quantization",
    "Kernel",
    "WARNING",
    "ERROR",
    "Error",
    "Starting vLLM",
)


def log_digest(path: Path, tail: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    keys = [line for line in lines if any(k in line for k in KEY_LINES)][:80]
    return "\n".join(["-- key lines --", *keys, f"-- last {tail} lines --", *lines[-tail:]])


class Budget:
    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        return self.ends - time.monotonic()


def run_bench(bench: Bench, spec: ServerSpec, base_url: str, model: str, tokenizer) -> list[dict]:
    extra = {"ignore_eos": True, "chat_template_kwargs": {"enable_thinking": False}}
    counter = tp.TokenCounter(tokenizer, {"enable_thinking": False})
    prompts = tp.make_prompts(
        bench.requests,
        bench.prompt_tokens,
        counter,
        workload=bench.workload,
        shared_prefix_tokens=1300,
        prefix_groups=14,
    )
    common = {
        "label": spec.label,
        "workload": bench.workload,
        "prompt_tokens_target": bench.prompt_tokens,
        "prompt_sizing": counter.source,
        "model": model,
    }
    if bench.kind == "noise":
        record = tp.noise_floor(
            base_url,
            model,
            prompts,
            concurrency=bench.concurrency,
            max_tokens=bench.max_tokens,
            extra=extra,
        )
        return [{**common, **record}]
    return [
        {
            **common,
            **tp.measure(
                client,
                base_url,
                model,
                prompts,
                concurrency=bench.concurrency,
                max_tokens=bench.max_tokens,
                extra=extra,
            ),
        }
        for client in bench.clients
    ]


def write(out: Path, plan: str, records: list[dict], digests: list[str]) -> None:
    (out / f"{plan}.json").write_text(json.dumps(records, indent=1) + "\n")
    starts = [r for r in records if r.get("kind") in ("server", "server_failed", "skipped")]
    lines = [f"# plan {plan}", "", tp.markdown_table(records), "", "| server | event | detail |"]
    lines.append("|---|---|---|")
    for r in starts:
        detail = r.get("startup_s") or r.get("error", "")[:200].replace("\n", " ")
        lines.append(f"| {r['label']} | {r['kind']} | {detail} |")
    (out / f"{plan}.md").write_text("\n".join(lines) + "\n")
    (out / f"{plan}-servers.txt").write_text("\n\n".join(digests) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", choices=sorted(PLANS), required=True)
    ap.add_argument("--models", type=Path, default=REPO / ".device-kit" / "models")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=560.0, help="seconds this plan may take")
    ap.add_argument("--dry-run", action="store_true", help="print the server commands only")
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/qg-bench"), help="server logs (not under --out)"
    )
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work / args.plan
    work.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        for spec in PLANS[args.plan]:
            plan = plan_for(spec, args.models, work)
            print(spec.label, ":", " ".join(plan.argv[3:]), env_set(plan) or "")
        return 0

    from quantgate.serving.engines import start_server, stop_server
    from quantgate.serving.servers import ServerError

    records: list[dict] = [{"kind": "machine", "label": "", "gpu": _smi()}]
    digests: list[str] = []
    for spec in PLANS[args.plan]:
        cheapest = min(b.estimate_s for b in spec.benches)
        if budget.left() < spec.start_estimate_s + cheapest + 20:
            records.append({"kind": "skipped", "label": spec.label, "error": "not enough time"})
            write(args.out, args.plan, records, digests)
            continue
        plan = plan_for(spec, args.models, work / _slug(spec.label))  # a log of its own
        argv = " ".join(plan.argv[3:])
        print(f"== {spec.label}: {argv} {env_set(plan) or ''}", flush=True)
        server = start_server(plan)
        try:
            server.start()
        except ServerError as exc:
            records.append(
                {"kind": "server_failed", "label": spec.label, "argv": argv, "error": str(exc)}
            )
            digests.append(f"=== {spec.label} (failed)\n{log_digest(plan.log_path)}")
            write(args.out, args.plan, records, digests)
            continue
        records.append(
            {
                "kind": "server",
                "label": spec.label,
                "argv": argv,
                "env": env_set(plan),
                "profile": spec.profile,
                "startup_s": round(server.startup_seconds or 0, 1),
                "vllm": tp.server_info(server.base_url).get("version"),
            }
        )
        try:
            folder = args.models / spec.model
            tokenizer = (
                tp.load_tokenizer(str(folder)) if (folder / "tokenizer.json").is_file() else None
            )
            tp.warm_up(server.base_url, plan.served_model, {"ignore_eos": True})
            for bench in spec.benches:
                if budget.left() < bench.estimate_s * 1.3 + 25:
                    records.append(
                        {
                            "kind": "skipped",
                            "label": spec.label,
                            "error": f"{bench.kind} at {bench.concurrency}: not enough time",
                        }
                    )
                    continue
                try:
                    got = run_bench(bench, spec, server.base_url, plan.served_model, tokenizer)
                except Exception as exc:  # noqa: BLE001 - recorded, the plan goes on
                    got = [
                        {
                            "kind": "bench_failed",
                            "label": spec.label,
                            "error": f"{bench}: {type(exc).__name__}: {exc}\n"
                            + traceback.format_exc(limit=3),
                        }
                    ]
                records.extend(got)
                for r in got:
                    print(
                        json.dumps(
                            {
                                k: r.get(k)
                                for k in (
                                    "label",
                                    "kind",
                                    "client",
                                    "concurrency",
                                    "requests",
                                    "tokens_per_s",
                                    "requests_per_s",
                                    "identical",
                                    "differing",
                                    "error",
                                )
                            }
                        ),
                        flush=True,
                    )
                write(args.out, args.plan, records, digests)
        finally:
            stop_server(server, plan)
            _wait_gpu_idle()
            digests.append(f"=== {spec.label}\n{log_digest(plan.log_path)}")
            write(args.out, args.plan, records, digests)
    print(tp.markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
