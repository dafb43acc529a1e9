"""Generation throughput of one OpenAI-compatible server: output tokens/s and requests/s.

``requests`` chat completions over a fixed prompt set (cycled), ``concurrency`` in flight at a
time, each asking for ``max_tokens``; the output tokens are the server's own
``usage.completion_tokens``, the time is the wall clock from the first request sent to the last
answer received::

    result = measure_throughput(endpoint, prompts=DEFAULT_PROMPTS, requests=32, max_tokens=128,
                                concurrency=8)                              # doctest: +SKIP
    result.tokens_per_s, result.requests_per_s                              # doctest: +SKIP

A suite's ``throughput:`` section becomes a :class:`ThroughputPlan` (:func:`plan_throughput`);
on vLLM the plan sends ``ignore_eos`` so every request generates exactly ``max_tokens`` and
precisions compare like for like (``transformers serve`` rejects unknown fields, so there each
request stops where the model stops). :func:`quantgate.report.relative_speed_table` prints the
precisions of one suite relative to the reference (BF16 = 100 %).
"""

from __future__ import annotations

import http.client
import math
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from quantgate.serving.servers import http_json

__all__ = [
    "DEFAULT_PROMPTS",
    "DEFAULT_CONCURRENCY",
    "ThroughputError",
    "ThroughputPlan",
    "ThroughputResult",
    "measure_throughput",
    "plan_throughput",
]

# Fixed and committed: changing them changes what every saved benchmark measured.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "What is 17 + 25?",
    "Write a haiku about autumn rain.",
    "Explain in two sentences what a hash table is.",
    "What is the plural of mouse?",
    "List three prime numbers greater than 50.",
    "Translate 'good morning' into French and Spanish.",
    "Summarize the plot of Romeo and Juliet in one sentence.",
    "What is the opposite of ancient?",
    "Give a short recipe for scrambled eggs.",
    "Why is the sky blue? Answer briefly.",
    "Write a Python function that reverses a string.",
    "Name the planets of the solar system in order.",
    "What is 12 times 13?",
    "Describe a cat to someone who has never seen one.",
    "Suggest a name for a small coffee shop.",
    "What does the acronym CPU stand for?",
)
DEFAULT_CONCURRENCY = 8  # when neither throughput.concurrency nor engine.vllm.max_num_seqs is set


class ThroughputError(RuntimeError):
    """A throughput request failed, or its answer did not report ``usage.completion_tokens``."""


@dataclass(frozen=True)
class ThroughputResult:
    """What one measurement (or several rounds, :meth:`combine`) produced."""

    requests: int
    concurrency: int
    max_tokens: int
    elapsed_s: float  # wall clock, first request sent to last answer received
    completion_tokens: int  # sum of usage.completion_tokens
    prompt_tokens: int = 0  # sum of usage.prompt_tokens where reported
    latencies_s: tuple[float, ...] = field(default=(), repr=False)  # per request
    rounds: int = 1

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def tokens_per_request(self) -> float:
        return self.completion_tokens / self.requests if self.requests else math.nan

    @property
    def mean_latency_s(self) -> float:
        return statistics.fmean(self.latencies_s) if self.latencies_s else math.nan

    @property
    def p90_latency_s(self) -> float:
        if not self.latencies_s:
            return math.nan
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]

    @classmethod
    def combine(cls, results: Sequence[ThroughputResult]) -> ThroughputResult:
        """Several rounds as one: totals over the summed time (so rates are time-weighted)."""
        if not results:
            raise ValueError("combine() needs at least one result")
        first = results[0]
        return cls(
            requests=sum(r.requests for r in results),
            concurrency=first.concurrency,
            max_tokens=first.max_tokens,
            elapsed_s=math.fsum(r.elapsed_s for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
            prompt_tokens=sum(r.prompt_tokens for r in results),
            latencies_s=tuple(x for r in results for x in r.latencies_s),
            rounds=sum(r.rounds for r in results),
        )

    def summary(self) -> dict[str, Any]:
        """The headline numbers, JSON-safe (pytest-benchmark's ``extra_info``)."""
        return {
            "tokens_per_s": round(self.tokens_per_s, 3),
            "requests_per_s": round(self.requests_per_s, 4),
            "requests": self.requests,
            "concurrency": self.concurrency,
            "max_tokens": self.max_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_request": round(self.tokens_per_request, 2),
            "mean_latency_s": round(self.mean_latency_s, 4),
            "p90_latency_s": round(self.p90_latency_s, 4),
            "elapsed_s": round(self.elapsed_s, 4),
            "rounds": self.rounds,
        }

    def to_record(self) -> dict[str, Any]:
        """Plain data (pytest-xdist carries it in a report's ``user_properties``)."""
        record = asdict(self)
        record["latencies_s"] = list(self.latencies_s)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ThroughputResult:
        return cls(**{**record, "latencies_s": tuple(record.get("latencies_s", ()))})


def measure_throughput(
    endpoint,
    *,
    prompts: Sequence[str],
    requests: int,
    max_tokens: int,
    concurrency: int,
    temperature: float = 0.0,
    extra_body: Mapping[str, Any] | None = None,
    timeout: float = 600.0,
) -> ThroughputResult:
    """POST ``requests`` chat completions to ``endpoint`` (a :class:`~quantgate.runs.
    Endpoint`), prompt ``i`` being ``prompts[i % len(prompts)]``, ``concurrency`` at a time.

    ``extra_body`` is merged into every request (e.g. ``{"ignore_eos": True}`` for vLLM). The
    first failed request (unreachable, HTTP status other than 200, no
    ``usage.completion_tokens``) stops the run with a :class:`ThroughputError` naming it.
    """
    if not prompts:
        raise ValueError("prompts: at least one prompt is required")
    if requests < 1 or max_tokens < 1 or concurrency < 1:
        raise ValueError(
            f"requests ({requests}), max_tokens ({max_tokens}) and concurrency "
            f"({concurrency}) must all be >= 1"
        )
    url = endpoint.chat_completions_url
    base = {
        "model": endpoint.model,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": False,
        **(extra_body or {}),
    }

    stop = threading.Event()  # set by the first failure: no further request is sent

    def one(index: int) -> tuple[int, int, float] | None:
        if stop.is_set():
            return None
        try:
            return _one(index)
        except BaseException:
            stop.set()
            raise

    def _one(index: int) -> tuple[int, int, float]:
        payload = {**base, "messages": [{"role": "user", "content": prompts[index % len(prompts)]}]}
        started = time.perf_counter()
        try:
            status, body = http_json(url, payload, timeout=timeout)
        except (OSError, http.client.HTTPException) as exc:  # unreachable, reset, timed out
            raise ThroughputError(
                f"throughput request {index + 1}/{requests} to {url} failed: {exc}"
            ) from exc
        latency = time.perf_counter() - started
        if status != 200:
            raise ThroughputError(
                f"throughput request {index + 1}/{requests} to {url} returned "
                f"HTTP {status}: {_excerpt(body)}"
            )
        usage = body.get("usage") if isinstance(body, dict) else None
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(completion, int) or isinstance(completion, bool) or completion < 0:
            raise ThroughputError(
                f"throughput request {index + 1}/{requests} to {url}: the answer has no "
                f"usage.completion_tokens (found usage={usage!r}); throughput counts the tokens "
                f"the server reports. Answer: {_excerpt(body)}"
            )
        prompt = usage.get("prompt_tokens")
        return completion, prompt if isinstance(prompt, int) else 0, latency

    pool = ThreadPoolExecutor(
        max_workers=min(concurrency, requests), thread_name_prefix="quantgate-throughput"
    )
    started = time.perf_counter()
    try:
        futures = [pool.submit(one, i) for i in range(requests)]
        wait(futures, return_when=FIRST_EXCEPTION)
        elapsed = time.perf_counter() - started
        if stop.is_set():
            pool.shutdown(wait=True, cancel_futures=True)  # the requests in flight finish
            raise min(
                (f for f in futures if not f.cancelled() and f.exception() is not None),
                key=futures.index,
            ).exception()
        answers = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return ThroughputResult(
        requests=requests,
        concurrency=concurrency,
        max_tokens=max_tokens,
        elapsed_s=elapsed,
        completion_tokens=sum(a[0] for a in answers),
        prompt_tokens=sum(a[1] for a in answers),
        latencies_s=tuple(a[2] for a in answers),
    )


def _excerpt(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= limit else text[:limit] + "..."


# --- from a suite ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputPlan:
    """One suite's throughput settings, resolved (see :func:`plan_throughput`)."""

    prompts: tuple[str, ...]
    requests: int
    max_tokens: int
    concurrency: int
    rounds: int = 1
    temperature: float = 0.0
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def run(self, endpoint, *, timeout: float = 600.0) -> ThroughputResult:
        return measure_throughput(
            endpoint,
            prompts=self.prompts,
            requests=self.requests,
            max_tokens=self.max_tokens,
            concurrency=self.concurrency,
            temperature=self.temperature,
            extra_body=self.extra_body,
            timeout=timeout,
        )


def plan_throughput(suite, engine: str, *, limit: int | None = None) -> ThroughputPlan:
    """The plan of ``suite.throughput`` against a server of ``engine`` (``vllm`` |
    ``transformers`` | ``external``).

    Concurrency: ``throughput.concurrency``, else the suite's ``engine.vllm.max_num_seqs``, else
    :data:`DEFAULT_CONCURRENCY`. Prompts: ``throughput.prompts``, else :data:`DEFAULT_PROMPTS`.
    ``limit`` (a ``--limit`` smoke run) caps the number of requests. The suite's
    ``generation.chat_template_kwargs`` (e.g. ``enable_thinking``) are sent as the accuracy
    tasks send them; on vLLM ``ignore_eos`` makes every request generate ``max_tokens``.
    """
    spec = suite.throughput
    if spec is None:
        raise ValueError(f"suite {suite.name!r} has no throughput: section")
    extra: dict[str, Any] = {}
    if suite.generation.chat_template_kwargs:
        extra["chat_template_kwargs"] = dict(suite.generation.chat_template_kwargs)
    if engine == "vllm":
        extra["ignore_eos"] = True
    requests = spec.requests if limit is None else max(1, min(spec.requests, limit))
    return ThroughputPlan(
        prompts=tuple(spec.prompts) or DEFAULT_PROMPTS,
        requests=requests,
        max_tokens=spec.max_tokens,
        concurrency=spec.concurrency or suite.engine.vllm.max_num_seqs or DEFAULT_CONCURRENCY,
        rounds=getattr(spec, "rounds", None) or 1,
        extra_body=extra,
    )


class ThroughputRounds:
    """A throughput case's rounds on one endpoint: what a benchmark harness times (``round``),
    then all of them as one result (``result``) and its numbers (``extra_info``)."""

    def __init__(self, suite, endpoint, *, limit: int | None = None, name: str = "") -> None:
        self.endpoint, self.name = endpoint, name or suite.name
        self.plan = plan_throughput(suite, endpoint.engine, limit=limit)
        self.results: list[ThroughputResult] = []

    @property
    def rounds(self) -> int:
        return self.plan.rounds

    def round(self) -> ThroughputResult:
        """One measurement."""
        result = self.plan.run(self.endpoint)
        self.results.append(result)
        return result

    def result(self) -> ThroughputResult:
        """All rounds so far as one :class:`ThroughputResult`."""
        if not self.results:
            raise RuntimeError(f"{self.name}: no throughput round ran")
        return ThroughputResult.combine(self.results)

    def extra_info(self) -> dict[str, Any]:
        """The result's summary plus the server's engine and checkpoint."""
        return {
            **self.result().summary(),
            "engine": self.endpoint.engine,
            "checkpoint": self.endpoint.checkpoint,
        }
