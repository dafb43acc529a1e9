"""A concurrent OpenAI chat client for quantgate's own runners (LiveBench, code benchmarks).

    >>> client = ChatClient(endpoint, cache_path=out / "requests.sqlite",
    ...                     identity="Qwen/Qwen3-32B-FP8", concurrency=8)     # doctest: +SKIP
    >>> answers = client.complete(
    ...     [ChatRequest.user("What is 2+2?", max_tokens=64)])                 # doctest: +SKIP
    >>> answers[0].content                                                     # doctest: +SKIP

- at most ``concurrency`` requests in flight; results come back in request order;
- retries with exponential backoff on connection errors, timeouts, 429 and 5xx; a 4xx answer is
  the request's fault and fails at once with the server's message;
- every answer is stored in a sqlite cache as it arrives, keyed by the checkpoint identity +
  messages + parameters, so a crash loses nothing and a re-run does not generate again;
- a progress bar (tqdm) on long runs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantgate.runs import Endpoint
from quantgate.serving.servers import http_json

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ClientError(RuntimeError):
    """A request that failed for good; the message names the request and the server's answer."""


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict[str, str], ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def user(cls, content: str, *, system: str | None = None, **params: Any) -> ChatRequest:
        """One user turn (after an optional system message), with request parameters."""
        messages = [{"role": "system", "content": system}] if system else []
        return cls(tuple(messages + [{"role": "user", "content": content}]), params)

    def body(self, model: str) -> dict[str, Any]:
        return {"model": model, "messages": list(self.messages), **self.params}


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    finish_reason: str | None = None
    reasoning: str | None = None  # vLLM's reasoning parser puts thinking here
    completion_tokens: int | None = None
    cached: bool = False


class ChatClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        cache_path: Path | None,
        identity: str,
        concurrency: int = 8,
        timeout: float = 3600.0,
        retries: int = 4,
        backoff: float = 1.0,
        progress: bool = True,
    ) -> None:
        self.endpoint, self.identity = endpoint, identity
        self.concurrency, self.timeout = max(1, concurrency), timeout
        self.retries, self.backoff, self.progress = retries, backoff, progress
        self._cache = _Cache(cache_path) if cache_path else None

    def cache_key(self, request: ChatRequest) -> str:
        payload = {
            "identity": self.identity,
            "messages": request.messages,
            "params": request.params,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def complete(
        self, requests: Sequence[ChatRequest], *, desc: str = "requests"
    ) -> list[ChatAnswer]:
        """Answers in the order of ``requests``; cached answers are not sent again."""
        answers: list[ChatAnswer | None] = [None] * len(requests)
        todo = []
        for index, request in enumerate(requests):
            hit = self._cache.get(self.cache_key(request)) if self._cache else None
            if hit is not None:
                answers[index] = ChatAnswer(**{**hit, "cached": True})
            else:
                todo.append(index)
        bar = _progress(len(todo), desc) if self.progress and todo else None
        try:
            with ThreadPoolExecutor(self.concurrency) as pool:
                for index, answer in zip(
                    todo, pool.map(lambda i: self._send(requests[i], i), todo)
                ):
                    answers[index] = answer
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return answers  # type: ignore[return-value]

    def _send(self, request: ChatRequest, index: int) -> ChatAnswer:
        url = self.endpoint.chat_completions_url
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, body = http_json(
                    url, request.body(self.endpoint.model), timeout=self.timeout
                )
            except OSError as exc:  # refused, reset, timed out
                error = f"{type(exc).__name__}: {exc}"
                continue
            if status == 200:
                answer = _parse(body, index, url)
                if self._cache:
                    self._cache.put(self.cache_key(request), answer)
                return answer
            error = f"HTTP {status}: {str(body)[:500]}"
            if status not in RETRY_STATUS:
                break
        raise ClientError(
            f"request {index + 1} to {url} failed after {attempt + 1} attempt(s): {error}"
        )


def _parse(body: Any, index: int, url: str) -> ChatAnswer:
    try:
        choice = body["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ClientError(
            f"request {index + 1} to {url}: not a chat completion: {str(body)[:300]}"
        ) from None
    usage = body.get("usage") or {}
    return ChatAnswer(
        content=message.get("content") or "",
        finish_reason=choice.get("finish_reason"),
        reasoning=message.get("reasoning_content") or message.get("reasoning"),
        completion_tokens=usage.get("completion_tokens"),
    )


class _Cache:
    """sqlite, one row per answer, committed as it arrives; safe across threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT)")
        self._db.commit()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, answer: ChatAnswer) -> None:
        data = {k: v for k, v in answer.__dict__.items() if k != "cached"}
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(data))
            )
            self._db.commit()


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False)
