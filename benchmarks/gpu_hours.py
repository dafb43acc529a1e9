"""GPU hours of the qwen3-32b suite per precision on one H200: a step-level model of vLLM's
continuous batching, calibrated on the throughput measured there, fed each task's item count,
concurrency, repeats and token budgets.

    python benchmarks/gpu_hours.py            # the tables of docs/performance.md
    python benchmarks/gpu_hours.py --json     # the same as data

The model (one engine step at a time, as vLLM's scheduler runs them):

- the client keeps ``num_concurrent`` requests in flight (a task's repeats are separate passes,
  one after the other, as quantgate's lm-eval runner runs them; SciCode's steps of one problem
  are sequential); the server runs at most ``max_num_seqs`` of them and holds their KV cache
  (256 KiB a token in BF16) within what the GPU has left beside the weights, preempting the
  newest (recompute) when decoding runs out of room;
- each step decodes one token of every running sequence and prefills up to
  ``max_num_batched_tokens`` (8192, vLLM's default on this GPU) of prompt in chunks; prompt
  tokens of a shared prefix already cached (MMLU-Pro's 5-shot exemplars, one prefix per
  subject) are not computed again (prefix caching, vLLM's default);
- a step takes max(FLOPs / F, bytes / B) + o: FLOPs 2 x 32.8e9 a token plus attention
  (4 x 64 layers x 8192 x context), bytes the weights plus the KV cache it reads; F, B and o
  are fitted to the H200 measurements (1600-token prompts, 128 output tokens: 293 / 650 / 680
  output tok/s at 8 / 64 / 256 concurrent requests with vLLM's defaults, 109 with
  enforce_eager and 8 sequences); quantized precisions scale F by the ratio measured in the same
  run (block FP8 541 / NVFP4 364 / online FP8 780 vs BF16 548 tok/s, all prefill-bound) and
  read their own weight bytes;
- output lengths are drawn (seeded) around each task's assumed mean, capped at its
  ``max_gen_toks``; prompt lengths are each task's assumed mean.

What the model leaves out: scoring on the host while the server waits (LiveCodeBench and SciCode
sandboxes, LiveBench's judge), listed as its own column; the server's start (~2-3 min per
precision with real weights); speculative effects of real weights (dummy weights never stop
early, real replies stop at EOS: the output means below are what real replies are assumed to
be). The token means are estimates (documented per task below) until a run's samples measure
them: replace them with ``samples.jsonl``'s real lengths after the first BF16 run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field, replace

# --- the GPU and the model --------------------------------------------------------------------

GIB = 2**30
N_LINEAR = 32.0e9  # Qwen3-32B parameters in matmuls (64 layers + lm_head); 2 FLOPs each a token
ATTN = 4 * 64 * 64 * 128  # attention FLOPs per token per context token (QK^T and PV, 64 heads)
KV_BYTES = 64 * 8 * 128 * 2 * 2  # bytes of BF16 KV cache per token (64 layers, 8 KV heads)
GPU_BYTES = 143771 * 2**20  # H200 as nvidia-smi reports it (~140 GiB)


@dataclass(frozen=True)
class Engine:
    """Fitted rates of one H200 (see calibrate) and vLLM's settings."""

    flops: float = 7.0e14  # effective matmul FLOP/s in BF16 (0.89 of the 788 measured)
    bandwidth: float = 4.1e12  # effective bytes/s (the copy test: 4.3e12)
    overhead_s: float = 0.002  # per step with CUDA graphs
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    gpu_memory_utilization: float = 0.95
    reserve_bytes: float = 5 * GIB  # activations, CUDA graphs, sampler
    kv_bytes: int = KV_BYTES  # per token: BF16 KV cache (--kv-cache-dtype fp8 halves it)


@dataclass(frozen=True)
class Precision:
    name: str
    weight_bytes: float
    flops_factor: float  # prefill-bound throughput relative to BF16, measured in one run


PRECISIONS = {
    "bf16": Precision("bf16", 65.5e9, 1.0),
    # Qwen3-32B-FP8: 128x128 block FP8 (CutlassFp8BlockScaledMMKernel), 541 vs 548 tok/s
    "fp8": Precision("fp8", 34.4e9, 541 / 548),
    # RedHatAI NVFP4 on Hopper: weight-only FP4 (Marlin), activations 16-bit: 364 vs 548
    "nvfp4": Precision("nvfp4", 19.9e9, 364 / 548),
    # vLLM's online per-tensor FP8 of the BF16 checkpoint (tiny suite's fp8_online): 780 vs 548
    "fp8_online": Precision("fp8_online", 34.4e9, 780 / 548),
}


def kv_capacity(engine: Engine, precision: Precision) -> int:
    """Tokens of KV cache the GPU holds beside the weights."""
    free = GPU_BYTES * engine.gpu_memory_utilization - precision.weight_bytes - engine.reserve_bytes
    return max(0, int(free // engine.kv_bytes))


# --- workloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One task as the server sees it."""

    name: str
    items: int  # requests per pass (SciCode: problems, each a chain of ``chain`` steps)
    prompt: int  # mean prompt tokens (chat template and system message included)
    output: float  # mean output tokens
    max_tokens: int
    concurrency: int
    passes: int = 1  # repeats run one pass after another
    sigma: float = 0.6  # lognormal spread of the output lengths
    shared_prefix: int = 0  # tokens of a prefix shared within a group (prefix caching)
    groups: int = 1
    chain: int = 1  # sequential requests per item (SciCode's steps)
    host_s: float = 0.0  # scoring on the host while the server waits (estimate)
    note: str = ""


# Token means are estimates (see docs/performance.md) until the first BF16 run measures them.
SUITE: tuple[Workload, ...] = (
    Workload(
        "mmlu_pro",
        2800,
        2000,
        300,
        2048,
        256,
        shared_prefix=1650,
        groups=14,
        host_s=20,
        note="14 subjects x 200; 5-shot CoT prompt ~2000 tokens of which ~1650 the subject's "
        "exemplars (cached); the model may follow the CoT exemplars: ~300 output tokens",
    ),
    Workload(
        "gpqa_diamond", 198, 320, 40, 2048, 256, host_s=5, note="0-shot, 4 choices; answer-only"
    ),
    Workload(
        "math500",
        500,
        150,
        80,
        2048,
        256,
        host_s=30,
        note="answer-only \\boxed{}; math-verify on the host",
    ),
    Workload(
        "aime24",
        30,
        180,
        40,
        2048,
        64,
        passes=16,
        host_s=5,
        note="answer-only, 16 sampled passes of 30",
    ),
    Workload(
        "aime24_think",
        30,
        180,
        12000,
        32768,
        64,
        passes=4,
        sigma=0.45,
        host_s=5,
        note="thinking traces ~12k tokens (Qwen3-32B on AIME'24), 4 passes of 30",
    ),
    Workload(
        "hle",
        2150,
        350,
        50,
        2048,
        256,
        host_s=10,
        note="text-only exact-answer / multiple choice; answer-only",
    ),
    Workload(
        "livecodebench",
        340,
        700,
        650,
        4096,
        256,
        host_s=150,
        note="v5+v6 problems; code ~650 tokens thinking off; sandboxed tests, 8 workers",
    ),
    Workload(
        "scicode",
        65,
        2200,
        550,
        4096,
        64,
        chain=5,
        host_s=200,
        note="65 problems x ~4.4 steps in sequence, prompts carry earlier steps' code",
    ),
    Workload(
        "livebench",
        1000,
        1000,
        450,
        4096,
        256,
        host_s=240,
        note="6 categories, thinking off; judge loop on the host (coding tests)",
    ),
)
THINKING = "aime24_think"


# --- the simulation -------------------------------------------------------------------------------


@dataclass
class _Seq:
    rid: int
    prompt: int  # tokens to compute before the first output token
    output: int
    cached: int = 0  # prompt tokens served from the prefix cache
    done_prompt: int = 0
    done_output: int = 0
    chain_left: int = 0
    group: int = -1

    @property
    def context(self) -> int:
        return self.done_prompt + self.done_output

    @property
    def kv(self) -> int:
        """KV tokens this sequence holds of its own (a cached shared prefix is held once)."""
        return self.context - self.cached

    @property
    def prefilling(self) -> bool:
        return self.done_prompt < self.prompt


@dataclass
class Result:
    seconds: float
    steps: int
    preemptions: int
    output_tokens: int
    prompt_tokens: int
    peak_running: int
    extra: dict = field(default_factory=dict)


def _lengths(w: Workload, n: int, rng: random.Random) -> list[int]:
    mu = math.log(max(w.output, 1.0)) - w.sigma**2 / 2  # lognormal with mean w.output
    return [max(1, min(w.max_tokens, round(rng.lognormvariate(mu, w.sigma)))) for _ in range(n)]


def simulate(w: Workload, engine: Engine, precision: Precision, seed: int = 0) -> Result:
    """Seconds the server needs for the workload (all passes), step by step."""
    rng = random.Random(seed)
    capacity = kv_capacity(engine, precision)
    flops = engine.flops * precision.flops_factor
    total = Result(0.0, 0, 0, 0, 0, 0)
    for _ in range(w.passes):
        lengths = _lengths(w, w.items * w.chain, rng)
        r = _one_pass(w, engine, precision.weight_bytes, flops, capacity, lengths)
        total.seconds += r.seconds
        total.steps += r.steps
        total.preemptions += r.preemptions
        total.output_tokens += r.output_tokens
        total.prompt_tokens += r.prompt_tokens
        total.peak_running = max(total.peak_running, r.peak_running)
    return total


def _one_pass(w, engine, weight_bytes, flops, capacity, lengths) -> Result:
    kv_bytes = engine.kv_bytes
    pending = list(range(w.items))  # items not yet sent
    cached_groups: set[int] = set()
    waiting: list[_Seq] = []  # sent, not running (FCFS; preempted ones go first)
    running: list[_Seq] = []
    in_flight = 0
    t, steps, preempted, out_tokens, prompt_tokens, peak = 0.0, 0, 0, 0, 0, 0
    length_iter = iter(lengths)

    def send(item: int, step_index: int = 0) -> _Seq:
        group = item % w.groups if w.shared_prefix else -1
        seq = _Seq(item, w.prompt, next(length_iter), group=group)
        seq.chain_left = w.chain - 1 - step_index
        return seq

    while pending and in_flight < w.concurrency:
        waiting.append(send(pending.pop(0)))
        in_flight += 1
    used = 0  # KV tokens held by running sequences
    while waiting or running:
        # one step, as vLLM's scheduler builds it: the running sequences first (a decode token
        # each, prefill chunks for those still prefilling), then waiting ones (FCFS) while the
        # token budget, the sequence limit and the KV cache allow; a prefix cache hit is
        # looked up when a request is first scheduled
        decoding = [s for s in running if not s.prefilling]
        budget = engine.max_num_batched_tokens - len(decoding)
        chunks: list[tuple[_Seq, int]] = []
        for s in running:
            if s.prefilling and budget > 0:
                n = min(s.prompt - s.done_prompt, budget)
                budget -= n
                chunks.append((s, n))
        while waiting and budget > 0 and len(running) < engine.max_num_seqs:
            seq = waiting[0]
            if seq.group >= 0 and seq.group in cached_groups and seq.done_prompt == 0:
                seq.cached = min(w.shared_prefix, seq.prompt - 1)
                seq.done_prompt = seq.cached
            n = min(seq.prompt - seq.done_prompt, budget)
            if used + seq.kv + n > capacity:
                break
            waiting.pop(0)
            running.append(seq)
            used += seq.kv
            budget -= n
            chunks.append((seq, n))
        peak = max(peak, len(running))
        step_flops = step_bytes = 0.0
        for s in decoding:
            step_flops += ATTN * s.context
            step_bytes += kv_bytes * s.context
        for s, n in chunks:
            a = s.done_prompt
            step_flops += ATTN * (a + n / 2) * n
            step_bytes += kv_bytes * a
        # KV room for this step's new tokens; preempt the newest (recompute) when short
        growth = len(decoding) + sum(n for _, n in chunks)
        while used + growth > capacity and len(running) > 1:
            victim = running.pop()
            used -= victim.kv
            victim.prompt, victim.done_prompt = victim.prompt + victim.done_output, 0
            victim.output -= victim.done_output
            victim.done_output, victim.cached = 0, 0
            waiting.insert(0, victim)
            preempted += 1
            decoding = [s for s in decoding if s is not victim]
            chunks = [(s, n) for s, n in chunks if s is not victim]
            growth = len(decoding) + sum(n for _, n in chunks)
        step_flops += 2 * N_LINEAR * (len(decoding) + sum(n for _, n in chunks))
        step_bytes += weight_bytes
        t += max(step_flops / flops, step_bytes / engine.bandwidth) + engine.overhead_s
        steps += 1
        for s, n in chunks:
            s.done_prompt += n
            prompt_tokens += n
            used += n
            if not s.prefilling and s.group >= 0:
                cached_groups.add(s.group)
        finished = []
        for s in decoding:
            s.done_output += 1
            out_tokens += 1
            used += 1
            if s.done_output >= s.output:
                finished.append(s)
        for s in chunks:  # a prompt done this step yields its first token too
            seq = s[0]
            if not seq.prefilling and seq.done_output == 0:
                seq.done_output = 1
                out_tokens += 1
                used += 1
                if seq.done_output >= seq.output:
                    finished.append(seq)
        for s in finished:
            running.remove(s)
            used -= s.kv
            if s.chain_left > 0:  # the problem's next step, once this one is answered
                nxt = _Seq(s.rid, w.prompt, next(length_iter), group=s.group)
                nxt.chain_left = s.chain_left - 1
                waiting.append(nxt)
            else:
                in_flight -= 1
                if pending:
                    waiting.append(send(pending.pop(0)))
                    in_flight += 1
    return Result(t, steps, preempted, out_tokens, prompt_tokens, peak)


# --- calibration ----------------------------------------------------------------------------------

MEASURED = (  # (label, concurrency, max_num_seqs, eager, requests, output tok/s) on the H200
    ("defaults, 8 concurrent", 8, 256, False, 64, 293.0),
    ("defaults, 64 concurrent", 64, 256, False, 256, 650.0),
    ("defaults, 256 concurrent", 256, 256, False, 512, 680.0),
    ("enforce_eager, 8 seqs", 8, 8, True, 32, 109.0),
)
EAGER_OVERHEAD_S = 0.047  # per step without CUDA graphs (fitted to the 109 tok/s)


def calibration(engine: Engine) -> list[dict]:
    rows = []
    for label, conc, seqs, eager, n, measured in MEASURED:
        e = replace(
            engine,
            max_num_seqs=seqs,
            overhead_s=EAGER_OVERHEAD_S if eager else engine.overhead_s,
        )
        w = Workload("bench", n, 1600, 128, 128, conc, sigma=1e-9)
        r = simulate(w, e, PRECISIONS["bf16"])
        rows.append(
            {
                "settings": label,
                "measured_tok_s": measured,
                "model_tok_s": round(r.output_tokens / r.seconds, 1),
                "ratio": round(r.output_tokens / r.seconds / measured, 3),
            }
        )
    return rows


# --- the tables -----------------------------------------------------------------------------------


def estimate(engine: Engine, precisions=("bf16", "fp8", "nvfp4")) -> dict:
    out: dict = {"tasks": {}, "totals": {}}
    for w in SUITE:
        out["tasks"][w.name] = {"workload": w.__dict__.copy()}
        for p in precisions:
            r = simulate(w, engine, PRECISIONS[p])
            out["tasks"][w.name][p] = {
                "gpu_s": round(r.seconds, 1),
                "host_s": w.host_s,
                "output_tokens": r.output_tokens,
                "prompt_tokens_computed": r.prompt_tokens,
                "preemptions": r.preemptions,
                "peak_running": r.peak_running,
            }
    start_s = 150.0  # one server start per precision with real weights from a local disk
    for p in precisions:
        every = sum(out["tasks"][w.name][p]["gpu_s"] + w.host_s for w in SUITE) + start_s
        think = out["tasks"][THINKING][p]["gpu_s"] + SUITE_BY_NAME[THINKING].host_s
        out["totals"][p] = {
            "with_thinking_h": round(every / 3600, 2),
            "without_thinking_h": round((every - think) / 3600, 2),
            "server_start_s": start_s,
        }
    return out


SUITE_BY_NAME = {w.name: w for w in SUITE}


def levers(engine: Engine, precisions=("bf16", "fp8", "nvfp4")) -> list[dict]:
    """aime24_think, the suite's largest task, under what would bring it down."""
    w = SUITE_BY_NAME[THINKING]
    variants = {
        "as configured (4 passes of 30, one after another)": (w, engine),
        "the 4 repeats in one pass (120 in flight; a runner change)": (
            replace(w, items=w.items * w.passes, passes=1, concurrency=128),
            engine,
        ),
        "--kv-cache-dtype fp8 (KV cache halved; changes what is measured)": (
            w,
            replace(engine, kv_bytes=KV_BYTES // 2),
        ),
        "both": (
            replace(w, items=w.items * w.passes, passes=1, concurrency=128),
            replace(engine, kv_bytes=KV_BYTES // 2),
        ),
        "k = 2 samples instead of 4 (MDE 10.6 -> ~15 pp)": (replace(w, passes=2), engine),
    }
    rows = []
    for label, (work, eng) in variants.items():
        row = {"variant": label}
        for p in precisions:
            row[p] = round(simulate(work, eng, PRECISIONS[p]).seconds / 60, 1)
        rows.append(row)
    return rows


def stable_profile(engine: Engine) -> dict:
    """The suite under --profile stable (BF16): no CUDA graphs, 8 sequences a step."""
    eager = replace(engine, max_num_seqs=8, overhead_s=EAGER_OVERHEAD_S)
    per_task = {w.name: simulate(w, eager, PRECISIONS["bf16"]) for w in SUITE}
    think = per_task[THINKING]
    return {
        "hours": round(sum(r.seconds for r in per_task.values()) / 3600, 2),
        "aime24_think_pass_min": round(think.seconds / SUITE_BY_NAME[THINKING].passes / 60, 1),
    }


def markdown(engine: Engine, est: dict, cal: list[dict]) -> str:
    lines = ["Calibration (BF16, 1600-token prompts, 128 output tokens):", ""]
    lines += [
        "| settings | measured tok/s | model tok/s | model / measured |",
        "|---|---:|---:|---:|",
    ]
    for r in cal:
        lines.append(
            f"| {r['settings']} | {r['measured_tok_s']} | {r['model_tok_s']} | {r['ratio']} |"
        )
    precisions = list(est["totals"])
    lines += ["", "Estimated minutes per task on one H200 (GPU busy + host scoring):", ""]
    head = "| task | items x passes | prompt / output tokens | conc |"
    head += "".join(f" {p} min |" for p in precisions) + " host min |"
    lines += [head, "|---|---|---|---:|" + "---:|" * (len(precisions) + 1)]
    for name, row in est["tasks"].items():
        w = SUITE_BY_NAME[name]
        items = f"{w.items}{f' x {w.chain} steps' if w.chain > 1 else ''} x {w.passes}"
        cells = "".join(f" {row[p]['gpu_s'] / 60:.1f} |" for p in precisions)
        lines.append(
            f"| {name} | {items} | {w.prompt} / {w.output:g} | {w.concurrency} |{cells} "
            f"{w.host_s / 60:.1f} |"
        )
    lines += [
        "",
        "| per precision (incl. one server start) |" + "".join(f" {p} |" for p in precisions),
        "|---|" + "---:|" * len(precisions),
    ]
    lines.append(
        "| whole suite, hours |"
        + "".join(f" {est['totals'][p]['with_thinking_h']} |" for p in precisions)
    )
    lines.append(
        "| without aime24_think, hours |"
        + "".join(f" {est['totals'][p]['without_thinking_h']} |" for p in precisions)
    )
    lines += ["", "aime24_think (minutes) under what would bring it down:", ""]
    lines += [
        "| variant |" + "".join(f" {p} |" for p in precisions),
        "|---|" + "---:|" * len(precisions),
    ]
    for row in est.get("levers", []):
        lines.append(f"| {row['variant']} |" + "".join(f" {row[p]} |" for p in precisions))
    if "stable" in est:
        st = est["stable"]
        lines += [
            "",
            f"--profile stable (BF16, GPU only): {st['hours']} h; one aime24_think "
            f"pass (30 traces, 8 at a time) {st['aime24_think_pass_min']} min.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--flops", type=float, default=Engine.flops)
    ap.add_argument("--bandwidth", type=float, default=Engine.bandwidth)
    ap.add_argument("--overhead-s", type=float, default=Engine.overhead_s)
    ap.add_argument("--no-stable", action="store_true", help="skip the (slow) stable profile")
    args = ap.parse_args(argv)
    engine = Engine(flops=args.flops, bandwidth=args.bandwidth, overhead_s=args.overhead_s)
    cal = calibration(engine)
    est = estimate(engine)
    est["levers"] = levers(engine)
    if not args.no_stable:
        est["stable"] = stable_profile(engine)
    if args.json:
        print(json.dumps({"engine": engine.__dict__, "calibration": cal, **est}, indent=1))
    else:
        print(markdown(engine, est, cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
