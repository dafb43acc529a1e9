"""Throughput of ONE running OpenAI-compatible server through three clients: a plain concurrent
client, quantgate's ChatClient and lm-eval's local-chat-completions model (the lm-eval runner's
path), on the same prompts at the same concurrency.

    python benchmarks/throughput.py --base-url http://127.0.0.1:8000/v1 \
        --clients direct,chatclient,lmeval --concurrency 8,64,256 --requests 32,128,256 \
        --prompt-tokens 1600 --max-tokens 128 --tokenizer path/to/model --json out.json

- ``direct``: threads, one kept-alive ``http.client`` connection each: the reference for "the
  server kept busy";
- ``chatclient``: :class:`quantgate.serving.client.ChatClient` as LiveBench and the code runners
  use it (a fresh sqlite cache per run, so nothing is answered from it);
- ``lmeval``: ``lm_eval.models.openai_completions.LocalChatCompletion`` built with the model
  arguments quantgate's lm-eval runner passes (``num_concurrent``, ``tokenized_requests=False``,
  ``max_retries=3``), fed ``generate_until`` instances whose contexts are what
  ``apply_chat_template=True`` makes of the prompt: the requests ``simple_evaluate`` would send,
  without building a task (dataset loading and scoring are a fixed cost per task, not a rate).

Every request asks for ``--max-tokens`` with ``ignore_eos`` (random dummy weights never emit EOS;
on real weights it keeps the work per request fixed), temperature 0, seed 1234 and the suite's
``chat_template_kwargs``. Output tokens are the server's ``usage.completion_tokens`` (direct,
chatclient) and the delta of vLLM's ``vllm:generation_tokens_total`` counter on ``/metrics``
(every client, where the server has it; lm-eval returns text only, so without ``/metrics`` its
count is ``requests x max_tokens``, marked ``assumed``). Time: the wall clock from the first
request sent to the last answer received.

Prompts: request ``i`` is ``[i]`` and seeded random words, cut to ``--prompt-tokens`` tokens of
the chat-templated prompt with ``--tokenizer`` (the served model's), else sized from the server's
own ``usage.prompt_tokens`` on two probes. Every prompt differs from its first token, so prefix
caching shares nothing; ``--workload fewshot`` gives ``--prefix-groups`` shared prefixes of
``--shared-prefix-tokens`` (MMLU-Pro's 5-shot exemplars: one prefix per subject).

``--noise-floor C:N`` sends the same N prompts twice at concurrency C (direct client, greedy)
and compares the outputs token by token (``return_token_ids`` / logprob token ids where vLLM
gives them, else the text): the gate's noise floor at that concurrency.

Stdlib only, except the clients' own packages (quantgate, lm-eval) and ``--tokenizer``
(transformers). Results: a markdown table on stdout, records in ``--json`` (appended).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import queue
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CLIENTS = ("direct", "chatclient", "lmeval")
SEED = 1234
# Fixed word list: prompts are reproducible across machines and runs.
WORDS = (
    "the of and to in is that for it as with was on be by at this from or have an they which one "
    "you were all we her she there would their will when who him been has more if no out so what "
    "up said about into than them can only other time new some could these two may first then do "
    "any like my now over such our man me even most made after also did many off before must well "
    "back through years much where your way down should because long each just state people those "
    "too how little good world very still own see men work last here make while might great old "
    "year come since against go came right used take three states himself few house use during "
    "without again place around however home small found thought went say part once general high "
    "upon school every does got united left number course war until always away something fact "
    "water though less public put think almost hand enough far took head yet government system "
    "better set told nothing night end why called eyes find going look asked later knew point next "
    "program city business give group toward young days let room president side social given "
    "present several order national possible rather second face per among form important often"
).split()

# --------------------------------------------------------------------------------------- HTTP

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with _OPENER.open(urllib.request.Request(url), timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


def _post(url: str, payload: dict, timeout: float) -> dict:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=timeout) as r:
        return json.loads(r.read())


def root_url(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def served_model(base_url: str) -> str:
    status, text = _get(base_url.rstrip("/") + "/models")
    if status != 200:
        raise SystemExit(f"{base_url}/models answered {status}: {text[:300]}")
    ids = [m["id"] for m in json.loads(text).get("data", [])]
    if len(ids) != 1:
        raise SystemExit(f"{base_url}/models lists {ids}; pass --model")
    return ids[0]


def server_info(base_url: str) -> dict[str, Any]:
    status, text = _get(root_url(base_url) + "/version")
    version = None
    if status == 200:
        try:
            version = json.loads(text).get("version")
        except ValueError:
            pass
    return {"base_url": base_url, "version": version}


_METRIC = re.compile(r"^(vllm:(?:generation|prompt)_tokens_total)(?:\{[^}]*\})?\s+(\S+)$", re.M)


def server_counters(base_url: str) -> dict[str, float] | None:
    """vLLM's token counters from ``/metrics`` (summed over label sets); None without them."""
    status, text = _get(root_url(base_url) + "/metrics")
    if status != 200:
        return None
    totals: dict[str, float] = {}
    for name, value in _METRIC.findall(text):
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals or None


# --------------------------------------------------------------------------------------- prompts


class TokenCounter:
    """Tokens of a user message in the served chat template: exact with a tokenizer, else a
    linear fit to the server's ``usage.prompt_tokens`` (``calibrated``), else a guess."""

    def __init__(self, tokenizer=None, template_kwargs: dict | None = None) -> None:
        self.tokenizer, self.template_kwargs = tokenizer, template_kwargs or {}
        self.overhead, self.per_word, self.source = 0.0, 1.3, "guess"
        if tokenizer is not None:
            tokenizer.model_max_length = 10**9  # counting only: no "longer than" warnings
            self.overhead = float(self.count(""))
            sample = " ".join(WORDS)
            self.per_word = len(tokenizer.encode(sample, add_special_tokens=False)) / len(WORDS)
            self.source = "tokenizer"

    def count(self, content: str) -> int:
        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}],
            add_generation_prompt=True,
            tokenize=True,
            **self.template_kwargs,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding (transformers 5)
            ids = ids["input_ids"]
        return len(ids)

    def calibrate(self, probe: Callable[[str], int | None]) -> None:
        """Fit tokens = overhead + per_word * words from two probe requests."""
        small, large = " ".join(WORDS[:20]), " ".join((WORDS * 4)[:400])
        a, b = probe(small), probe(large)
        if a is None or b is None or b - a < 0.05 * 380:  # no usage, or a fake count
            return
        self.per_word = (b - a) / 380
        self.overhead = a - 20 * self.per_word
        self.source = "server usage"

    def words_for(self, target: int) -> int:
        """More words than a prompt of ``target`` tokens needs (a margin for rare long words)."""
        return int(max(1.0, target - self.overhead) / self.per_word * 1.25) + 16

    def fit(self, content_words: list[str], target: int) -> str:
        """The longest prefix of ``content_words`` (joined) whose prompt has ``target`` tokens
        (fewer when the words run out)."""
        budget = max(1, int(target - self.overhead))
        if self.tokenizer is None:
            return " ".join(content_words[: max(1, round(budget / self.per_word))])
        ids = self.tokenizer.encode(" ".join(content_words), add_special_tokens=False)[:budget]
        return self.tokenizer.decode(ids)


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def make_prompts(
    n: int,
    prompt_tokens: int,
    counter: TokenCounter,
    *,
    workload: str = "unique",
    shared_prefix_tokens: int = 0,
    prefix_groups: int = 1,
    seed: int = SEED,
) -> list[str]:
    """``n`` user messages of about ``prompt_tokens`` templated tokens each (see module doc)."""
    room = counter.words_for(prompt_tokens)  # words to cut from
    if workload == "unique":
        rngs = [random.Random(seed * 1_000_003 + i) for i in range(n)]
        return [
            counter.fit([f"[{i}]", *_words(rng, room)], prompt_tokens) for i, rng in enumerate(rngs)
        ]
    if workload != "fewshot":
        raise ValueError(f"workload {workload!r}: expected unique or fewshot")
    if not 0 < shared_prefix_tokens < prompt_tokens:
        raise ValueError("fewshot: 0 < --shared-prefix-tokens < --prompt-tokens")
    prefixes = [
        counter.fit(
            [f"<exemplars {g}>", *_words(random.Random(seed * 7919 + g), room)],
            shared_prefix_tokens,
        )
        for g in range(prefix_groups)
    ]
    prompts = []
    for i in range(n):
        prefix = prefixes[i % prefix_groups]
        rest = _words(random.Random(seed * 1_000_003 + i), room)
        # fit the whole prompt: the prefix stays whole, the question part is cut
        words = prefix.split(" ") + ["\n\nQuestion", f"[{i}]", *rest]
        prompts.append(counter.fit(words, prompt_tokens))
    return prompts


# --------------------------------------------------------------------------------------- clients


@dataclass
class Answer:
    latency_s: float | None  # the direct client's only
    completion_tokens: int | None
    prompt_tokens: int | None
    text: str
    token_ids: list | None = None


def payload(model: str, prompt: str, max_tokens: int, extra: dict) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": SEED,
        **extra,
    }


def _answer(body: dict, latency: float) -> Answer:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    ids = choice.get("token_ids")
    if ids is None and (choice.get("logprobs") or {}).get("content"):
        ids = [entry.get("token") for entry in choice["logprobs"]["content"]]
    return Answer(
        latency,
        usage.get("completion_tokens"),
        usage.get("prompt_tokens"),
        (choice.get("message") or {}).get("content") or "",
        ids,
    )


def run_direct(
    chat_url: str, bodies: Sequence[dict], concurrency: int, timeout: float
) -> tuple[float, list[Answer]]:
    """Threads with one kept-alive connection each; answers in request order."""
    parts = urlsplit(chat_url)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(bodies)):
        todo.put(index)
    answers: list[Answer | None] = [None] * len(bodies)
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            while not errors:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                data = json.dumps(bodies[index]).encode()
                for attempt in (1, 2):  # a kept-alive connection the server closed: once more
                    started = time.perf_counter()
                    try:
                        conn.request("POST", parts.path, data, {"Content-Type": "application/json"})
                        response = conn.getresponse()
                        raw = response.read()
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        if attempt == 2:
                            errors.append(f"request {index + 1}: {type(exc).__name__}: {exc}")
                            return
                if response.status != 200:
                    errors.append(f"request {index + 1}: HTTP {response.status}: {raw[:300]!r}")
                    return
                answers[index] = _answer(json.loads(raw), time.perf_counter() - started)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"direct client: {errors[0]}")
    return elapsed, answers  # type: ignore[return-value]


def run_chatclient(
    base_url: str, model: str, bodies: Sequence[dict], concurrency: int, timeout: float
) -> tuple[float, list[Answer]]:
    from quantgate.runs import Endpoint
    from quantgate.serving.client import ChatClient, ChatRequest

    requests = [
        ChatRequest(
            tuple(b["messages"]), {k: v for k, v in b.items() if k not in ("model", "messages")}
        )
        for b in bodies
    ]
    with tempfile.TemporaryDirectory(prefix="qg-bench-") as tmp:
        client = ChatClient(
            Endpoint(base_url, model, engine="vllm"),
            cache_path=Path(tmp) / "requests.sqlite",
            identity=f"benchmark-{uuid.uuid4()}",  # never a cache hit
            concurrency=concurrency,
            timeout=timeout,
            progress=False,
        )
        started = time.perf_counter()
        got = client.complete(requests)
        elapsed = time.perf_counter() - started
    # the client keeps no per-request times
    return elapsed, [Answer(None, a.completion_tokens, None, a.content) for a in got]


def lmeval_model_class() -> tuple[type, dict]:
    """The model class quantgate's lm-eval runner evaluates with: its progress-reporting
    ``local-chat-completions`` where this checkout has one (``chat_model``), else lm-eval's."""
    try:
        from lm_eval.api.registry import get_model

        from quantgate.runners.lmeval import chat_model

        return get_model(chat_model()), {"progress_label": "benchmark"}
    except ImportError:
        from lm_eval.models.openai_completions import LocalChatCompletion

        return LocalChatCompletion, {}


def run_lmeval(
    base_url: str, model: str, bodies: Sequence[dict], concurrency: int, timeout: float
) -> tuple[float, list[Answer]]:
    import logging

    from lm_eval.api.instance import Instance

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    model_class, extra_args = lmeval_model_class()
    lm = model_class(  # quantgate.runners.lmeval's model_args
        **extra_args,
        model=model,
        base_url=base_url.rstrip("/") + "/chat/completions",
        num_concurrent=concurrency,
        timeout=int(timeout),
        tokenized_requests=False,
        max_retries=3,
    )
    instances = []
    for i, body in enumerate(bodies):
        gen = {
            "until": [],
            "max_gen_toks": body["max_tokens"],
            "temperature": body["temperature"],
            "do_sample": False,
            **{
                k: v
                for k, v in body.items()
                if k not in ("model", "messages", "max_tokens", "temperature", "seed")
            },
        }
        context = lm.apply_chat_template(body["messages"])
        instances.append(Instance("generate_until", {}, (context, gen), i))
    started = time.perf_counter()
    texts = lm.generate_until(instances)
    elapsed = time.perf_counter() - started
    return elapsed, [Answer(None, None, None, t) for t in texts]


def run_client(
    client: str, base_url: str, model: str, bodies: Sequence[dict], concurrency: int, timeout: float
) -> tuple[float, list[Answer]]:
    if client == "direct":
        return run_direct(base_url.rstrip("/") + "/chat/completions", bodies, concurrency, timeout)
    if client == "chatclient":
        return run_chatclient(base_url, model, bodies, concurrency, timeout)
    if client == "lmeval":
        return run_lmeval(base_url, model, bodies, concurrency, timeout)
    raise ValueError(f"client {client!r}: expected one of {CLIENTS}")


# --------------------------------------------------------------------------------------- measuring


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def measure(
    client: str,
    base_url: str,
    model: str,
    prompts: Sequence[str],
    *,
    concurrency: int,
    max_tokens: int,
    extra: dict,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """One client, one concurrency, all ``prompts``: a record (see the module doc)."""
    bodies = [payload(model, p, max_tokens, extra) for p in prompts]
    before = server_counters(base_url)
    elapsed, answers = run_client(client, base_url, model, bodies, concurrency, timeout)
    after = server_counters(base_url)
    usage = [a.completion_tokens for a in answers]
    server_gen = server_prompt = None
    if before and after:
        server_gen = after.get("vllm:generation_tokens_total", 0) - before.get(
            "vllm:generation_tokens_total", 0
        )
        server_prompt = after.get("vllm:prompt_tokens_total", 0) - before.get(
            "vllm:prompt_tokens_total", 0
        )
    if all(isinstance(u, int) for u in usage):
        tokens, source = sum(usage), "usage"
    elif server_gen is not None:
        tokens, source = int(server_gen), "server /metrics"
    elif extra.get("ignore_eos"):
        tokens, source = len(answers) * max_tokens, "assumed (ignore_eos)"
    else:
        tokens, source = 0, "unknown"
    prompt_tokens = [a.prompt_tokens for a in answers if a.prompt_tokens is not None]
    latencies = [a.latency_s for a in answers if a.latency_s is not None]
    return {
        "client": client,
        "concurrency": concurrency,
        "requests": len(answers),
        "max_tokens": max_tokens,
        "elapsed_s": round(elapsed, 3),
        "completion_tokens": tokens,
        "tokens_source": source,
        "mean_prompt_tokens": round(statistics.fmean(prompt_tokens), 1) if prompt_tokens else None,
        "server_generation_tokens": server_gen,
        "server_prompt_tokens": server_prompt,
        "tokens_per_s": round(tokens / elapsed, 2) if elapsed > 0 else None,
        "requests_per_s": round(len(answers) / elapsed, 4) if elapsed > 0 else None,
        "prompt_tokens_per_s": (
            round(server_prompt / elapsed, 1) if server_prompt and elapsed > 0 else None
        ),
        "mean_latency_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "p90_latency_s": round(_percentile(latencies, 0.9), 3) if latencies else None,
    }


# vLLM: the sampled token ids (return_token_ids), else logprob entries named "token_id:<id>"
NOISE_EXTRA = {
    "return_token_ids": True,
    "logprobs": True,
    "top_logprobs": 0,
    "return_tokens_as_token_ids": True,
}


def noise_floor(
    base_url: str,
    model: str,
    prompts: Sequence[str],
    *,
    concurrency: int,
    max_tokens: int,
    extra: dict,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """The same prompts twice at ``concurrency``, greedy; how many outputs differ and where.
    Token ids where the server gives them (vLLM), else the text (a server that refuses the
    extra fields, such as ``transformers serve``, is asked without them)."""
    chat_url = base_url.rstrip("/") + "/chat/completions"
    ask = {**extra, **NOISE_EXTRA}
    try:
        _post(chat_url, payload(model, prompts[0], 1, ask), timeout)
    except urllib.error.HTTPError as exc:
        if exc.code not in (400, 422):
            raise
        ask = dict(extra)
    bodies = [payload(model, p, max_tokens, ask) for p in prompts]
    runs = [run_direct(chat_url, bodies, concurrency, timeout) for _ in range(2)]
    (t1, first), (t2, second) = runs
    with_ids = all(a.token_ids for a in first + second)
    compared = "token ids" if with_ids else "text"
    differ, divergence = 0, []
    for a, b in zip(first, second):
        left = a.token_ids if with_ids else a.text
        right = b.token_ids if with_ids else b.text
        if left != right:
            differ += 1
            divergence.append(
                next(
                    (k for k, (x, y) in enumerate(zip(left, right)) if x != y),
                    min(len(left), len(right)),
                )
            )
    return {
        "kind": "noise_floor",
        "concurrency": concurrency,
        "requests": len(prompts),
        "max_tokens": max_tokens,
        "compared": compared,
        "identical": len(prompts) - differ,
        "differing": differ,
        "first_divergence_median": statistics.median(divergence) if divergence else None,
        "first_divergence_min": min(divergence) if divergence else None,
        "elapsed_s": [round(t1, 3), round(t2, 3)],
        "tokens_per_s": [
            round(sum(a.completion_tokens or 0 for a in first) / t1, 2) if t1 else None,
            round(sum(a.completion_tokens or 0 for a in second) / t2, 2) if t2 else None,
        ],
    }


def warm_up(base_url: str, model: str, extra: dict, n: int = 4, timeout: float = 300.0) -> None:
    bodies = [payload(model, f"warm-up {i}", 8, extra) for i in range(n)]
    run_direct(base_url.rstrip("/") + "/chat/completions", bodies, n, timeout)


# --------------------------------------------------------------------------------------- report


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """Throughput records as one table; ``vs direct``: req/s over the direct client's at the
    same settings, workload and concurrency (every request does the same work: same prompts,
    ``ignore_eos``; req/s also needs no token count, which lm-eval does not return)."""
    rows = [r for r in records if r.get("kind", "throughput") == "throughput"]
    direct = {
        (r.get("label"), r.get("workload"), r["concurrency"]): r["requests_per_s"]
        for r in rows
        if r["client"] == "direct" and r.get("requests_per_s")
    }
    head = (
        "| settings | workload | client | conc | requests | out tok/s | req/s | prompt tok/s "
        "| vs direct | mean latency s | tokens from |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        ref = direct.get((r.get("label"), r.get("workload"), r["concurrency"]))
        ratio = f"{r['requests_per_s'] / ref:.2f}" if ref and r.get("requests_per_s") else "-"
        lines.append(
            f"| {r.get('label', '')} | {r.get('workload', '')} | {r['client']} "
            f"| {r['concurrency']} | {r['requests']} | {r['tokens_per_s']} "
            f"| {r['requests_per_s']} | {r.get('prompt_tokens_per_s') or '-'} | {ratio} "
            f"| {r['mean_latency_s'] if r['mean_latency_s'] is not None else '-'} "
            f"| {r['tokens_source']} |"
        )
    noise = [r for r in records if r.get("kind") == "noise_floor"]
    if noise:
        lines += [
            "",
            "| settings | conc | requests | compared | identical | differing "
            "| first divergence (median / min) |",
            "|---|---:|---:|---|---:|---:|---|",
        ]
        for r in noise:
            lines.append(
                f"| {r.get('label', '')} | {r['concurrency']} | {r['requests']} "
                f"| {r['compared']} | {r['identical']} | {r['differing']} "
                f"| {r['first_divergence_median']} / {r['first_divergence_min']} |"
            )
    return "\n".join(lines)


def append_json(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append ``records`` to the JSON list in ``path`` (created if missing), atomically."""
    existing = json.loads(path.read_text()) if path.exists() else []
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([*existing, *records], indent=1) + "\n")
    os.replace(tmp, path)


def load_tokenizer(path: str | None):
    if not path:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True, help="http://HOST:PORT/v1")
    ap.add_argument("--model", help="served model name (default: the one /v1/models lists)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated: %(default)s")
    ap.add_argument("--concurrency", default="8,64,256")
    ap.add_argument(
        "--requests", default="", help="per concurrency, comma-separated (default max(32, 2C))"
    )
    ap.add_argument("--prompt-tokens", type=int, default=1600)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--workload", choices=("unique", "fewshot"), default="unique")
    ap.add_argument("--shared-prefix-tokens", type=int, default=1300)
    ap.add_argument("--prefix-groups", type=int, default=14)
    ap.add_argument("--tokenizer", help="the served model's tokenizer folder (exact prompt sizes)")
    ap.add_argument(
        "--chat-template-kwargs",
        default='{"enable_thinking": false}',
        help="JSON sent as chat_template_kwargs ('' for none)",
    )
    ap.add_argument(
        "--no-ignore-eos", action="store_true", help="let requests stop at EOS (real weights)"
    )
    ap.add_argument("--noise-floor", default="", help="C:N: N prompts twice at concurrency C")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    ap.add_argument("--label", default="", help="what the server runs (a column of the table)")
    ap.add_argument("--json", type=Path, help="append the records to this JSON list")
    args = ap.parse_args(argv)

    clients = [c for c in args.clients.split(",") if c]
    unknown = sorted(set(clients) - set(CLIENTS))
    if unknown:
        ap.error(f"--clients: unknown {unknown}; expected some of {CLIENTS}")
    levels = _ints(args.concurrency)
    counts = _ints(args.requests) or [max(32, 2 * c) for c in levels]
    if len(counts) != len(levels):
        ap.error("--requests: one count per --concurrency value")
    model = args.model or served_model(args.base_url)
    extra: dict[str, Any] = {} if args.no_ignore_eos else {"ignore_eos": True}
    template_kwargs = json.loads(args.chat_template_kwargs) if args.chat_template_kwargs else {}
    if template_kwargs:
        extra["chat_template_kwargs"] = template_kwargs
    counter = TokenCounter(load_tokenizer(args.tokenizer), template_kwargs)
    chat_url = args.base_url.rstrip("/") + "/chat/completions"
    if counter.tokenizer is None:
        counter.calibrate(
            lambda text: (
                _post(chat_url, payload(model, text, 1, extra), args.timeout).get("usage") or {}
            ).get("prompt_tokens")
        )
    noise = None
    if args.noise_floor:
        c, _, n = args.noise_floor.partition(":")
        noise = (int(c), int(n or 2 * int(c)))
    needed = max([*counts, noise[1] if noise else 0])
    prompts = make_prompts(
        needed,
        args.prompt_tokens,
        counter,
        workload=args.workload,
        shared_prefix_tokens=args.shared_prefix_tokens,
        prefix_groups=args.prefix_groups,
    )
    common = {
        "label": args.label,
        "workload": args.workload,
        "prompt_tokens_target": args.prompt_tokens,
        "prompt_sizing": counter.source,
        "server": server_info(args.base_url),
        "model": model,
    }
    if args.warmup:
        warm_up(args.base_url, model, extra, args.warmup)
    records = []
    for level, count in zip(levels, counts):
        for client in clients:
            record = measure(
                client,
                args.base_url,
                model,
                prompts[:count],
                concurrency=level,
                max_tokens=args.max_tokens,
                extra=extra,
                timeout=args.timeout,
            )
            records.append({**common, **record})
            print(
                f"{client:>10} conc {level:>4}: {record['tokens_per_s']} out tok/s, "
                f"{record['requests_per_s']} req/s ({record['requests']} requests, "
                f"{record['elapsed_s']} s)",
                file=sys.stderr,
                flush=True,
            )
            if args.json:
                append_json(args.json, [records[-1]])
    if noise:
        record = noise_floor(
            args.base_url,
            model,
            prompts[: noise[1]],
            concurrency=noise[0],
            max_tokens=args.max_tokens,
            extra=extra,
            timeout=args.timeout,
        )
        records.append({**common, **record})
        if args.json:
            append_json(args.json, [records[-1]])
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
