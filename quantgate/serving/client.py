"""A concurrent OpenAI chat client for quantgate's own runners (LiveBench, code benchmarks).

    >>> client = ChatClient(endpoint, cache_path=out / "requests.sqlite",
    ...                     identity="Qwen/Qwen3-32B-FP8", concurrency=8)     # doctest: +SKIP
    >>> answers = client.complete(
    ...     [ChatRequest.user("What is 2+2?", max_tokens=64)])                 # doctest: +SKIP
    >>> answers[0].content                                                     # doctest: +SKIP

- at most ``concurrency`` requests in flight; results come back in request order;
- retries with exponential backoff (``backoff`` × 2^k s, or the server's ``Retry-After`` in
  seconds where longer) on connection errors, timeouts, broken HTTP (``http.client.HTTPException``:
  a non-HTTP status line, a short body, a connection closed without an answer), 408, 429 and 5xx;
  a 4xx answer is the request's fault and fails at once with the server's message;
- ``timeout`` bounds each attempt as a whole (connect, send, every byte of the answer), not each
  read: a server that trickles its answer times out too;
- ``deadline`` bounds each request as a whole: every attempt and every wait between them. No
  attempt runs past it and no wait is started that would pass it (a ``Retry-After`` beyond it fails
  the request at once). Default: what ``retries + 1`` full attempts and their backoff take;
- a request that fails for good raises :class:`ClientError` naming the request (1-based index)
  and the URL, with the last error; it does so at once: the other requests in flight are aborted
  and the queued ones dropped, not waited for;
- Ctrl-C (any exception in the calling thread, KeyboardInterrupt included) does the same: the
  queued requests are dropped, the in-flight ones aborted (their sockets shut down from the
  calling thread, which wakes the blocked reads), a wait between retries ends at once. The worker
  threads are daemon threads, so even one stuck where a socket cannot reach it (name resolution,
  a connect) never keeps the interpreter alive;
- every answer is stored in a sqlite cache as it arrives, keyed by the checkpoint identity +
  messages + parameters, so a crash loses nothing and a re-run does not generate again;
- progress (:mod:`quantgate.progress`: answers done / total, tokens/s, ETA) on long runs.

Requests go straight to the endpoint (``http.client``, never through a proxy, one connection per
attempt); the calling thread waits for the answers and enforces the attempts' timeouts.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quantgate.progress import track
from quantgate.runs import Endpoint, RunError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_WATCH_INTERVAL = 0.25  # seconds: how often the waiting thread looks at the attempts' timeouts


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
    """``endpoint`` may be a zero-argument callable returning the Endpoint (e.g. a
    :class:`~quantgate.runs.PendingEndpoint`): it is called only when a request misses the cache,
    so a fully cached run starts no server."""

    def __init__(
        self,
        endpoint: Endpoint | Callable[[], Endpoint],
        *,
        cache_path: Path | None,
        identity: str,
        concurrency: int = 8,
        timeout: float = 3600.0,
        retries: int = 4,
        backoff: float = 1.0,
        progress: bool = True,
        deadline: float | None = None,
        label: str = "requests",
    ) -> None:
        self.endpoint, self.identity = endpoint, identity
        self.concurrency, self.timeout = max(1, concurrency), timeout
        self.retries, self.backoff, self.progress = max(0, retries), backoff, progress
        self.deadline = deadline
        self.label = label  # names the progress lines (a case id)
        self._cache = _Cache(cache_path) if cache_path else None

    @property
    def request_deadline(self) -> float:
        """Seconds one request may take, all attempts and backoff included."""
        if self.deadline is not None:
            return self.deadline
        return self.timeout * (self.retries + 1) + sum(
            self.backoff * 2**k for k in range(self.retries)
        )

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
        if not todo:
            return answers  # type: ignore[return-value]
        if callable(self.endpoint):  # the server is needed now
            try:
                self.endpoint = self.endpoint()
            except RunError as exc:
                raise type(exc)(
                    f"{exc} ({len(todo)} of {len(requests)} requests are not in the cache)"
                ) from None
        bar = track(desc, len(todo)) if self.progress else None
        batch = _Batch(self, requests, todo)
        try:
            batch.start()
            for _ in todo:
                index, answer = batch.next_answer()
                answers[index] = answer
                if bar is not None:
                    bar.update(tokens=answer.completion_tokens)
        finally:
            batch.stop()  # a no-op once all answered; else (a failure, Ctrl-C) drop and abort
            if bar is not None:
                bar.close()
        return answers  # type: ignore[return-value]

    def _send(self, request: ChatRequest, index: int, batch: _Batch) -> ChatAnswer:
        """One request, its retries included; runs in a worker thread."""
        url = self.endpoint.chat_completions_url
        payload = request.body(self.endpoint.model)
        budget = self.request_deadline
        ends = time.monotonic() + budget
        error, attempt = "", 0
        while True:
            attempt += 1
            wait = self.backoff * 2 ** (attempt - 1)
            try:
                status, headers, body = batch.post(
                    url, payload, min(self.timeout, max(0.0, ends - time.monotonic()))
                )
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out,
                batch.check_stopped()  # not HTTP, short body, closed without an answer
                error = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    answer = _parse(body, index, url)
                    if self._cache:
                        self._cache.put(self.cache_key(request), answer)
                    return answer
                error = f"HTTP {status}: {str(body)[:500]}"
                if status not in RETRY_STATUS:
                    break
                asked = _retry_after(headers)
                if asked is not None:
                    error += f" (Retry-After: {asked:g})"
                    wait = max(wait, asked)
            if attempt > self.retries:
                break
            if time.monotonic() + wait >= ends:
                error += (
                    f"; no time for another attempt within the {budget:g} s deadline "
                    f"(the next would start in {wait:g} s)"
                )
                break
            batch.sleep(wait)
        raise ClientError(
            f"request {index + 1} to {url} failed after {attempt} attempt(s): {error}"
        )


class _Stopped(Exception):
    """The batch was stopped (a sibling failed, or the caller was interrupted): a worker ends."""


class _Batch:
    """The requests of one :meth:`ChatClient.complete` call: daemon worker threads take indices
    from a queue and put ``(index, answer or exception)`` on another, which the calling thread
    reads (:meth:`next_answer`), aborting every attempt that outlives its timeout meanwhile."""

    def __init__(self, client: ChatClient, requests: Sequence[ChatRequest], todo: list[int]):
        self.client, self.requests = client, requests
        self._stopped = threading.Event()
        self._todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in todo:
            self._todo.put(index)
        self._done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: set[_Attempt] = set()
        self._workers = min(client.concurrency, len(todo))

    # -- the calling thread

    def start(self) -> None:
        for n in range(self._workers):
            threading.Thread(target=self._work, name=f"quantgate-chat-{n}", daemon=True).start()

    def next_answer(self) -> tuple[int, ChatAnswer]:
        """The next answer to arrive; raises the first failure. Interruptible: waits in short
        steps, aborting attempts past their timeout at each."""
        while True:
            try:
                index, outcome = self._done.get(timeout=self._abort_overdue())
            except queue.Empty:
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return index, outcome

    def stop(self) -> None:
        """Drop the queued requests, end the waits between retries, abort the attempts in
        flight. The workers end on their own: nothing is joined."""
        self._stopped.set()
        with self._lock:
            in_flight = list(self._in_flight)
        for attempt in in_flight:
            attempt.abort("stopped")

    def _abort_overdue(self) -> float:
        """Abort the attempts past their timeout; seconds until the next one is due."""
        now = time.monotonic()
        with self._lock:
            in_flight = list(self._in_flight)
        due = now + _WATCH_INTERVAL
        for attempt in in_flight:
            if attempt.ends <= now:
                attempt.abort("timeout")
            else:
                due = min(due, attempt.ends)
        return max(due - now, 0.0) + 0.01

    # -- the workers

    def _work(self) -> None:
        while not self._stopped.is_set():
            try:
                index = self._todo.get_nowait()
            except queue.Empty:
                return
            try:
                outcome: Any = self.client._send(self.requests[index], index, self)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 - a ClientError, or a bug: the caller's
                outcome = exc
            self._done.put((index, outcome))

    def check_stopped(self) -> None:
        if self._stopped.is_set():
            raise _Stopped

    def sleep(self, seconds: float) -> None:
        if self._stopped.wait(seconds):
            raise _Stopped

    def post(self, url: str, payload: Any, timeout: float) -> tuple[int, Any, Any]:
        attempt = _Attempt(timeout)
        with self._lock:
            self.check_stopped()
            self._in_flight.add(attempt)
        try:
            return attempt.post(url, payload)
        finally:
            with self._lock:
                self._in_flight.discard(attempt)


class _Attempt:
    """One HTTP POST that another thread can abort (:meth:`abort` shuts its socket down, which
    wakes a read blocked on it); it must end by ``ends`` (monotonic time)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ends = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted: str | None = None

    def abort(self, why: str) -> None:
        with self._lock:
            if self._aborted:
                return
            self._aborted = why
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def post(self, url: str, payload: Any) -> tuple[int, Any, Any]:
        """``(status, headers, parsed body or text)``."""
        if self.timeout <= 0:
            raise TimeoutError("timed out: no time left")
        parts = urlsplit(url)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = kind(parts.hostname or "", parts.port, timeout=self.timeout)
        try:
            conn.connect()  # bounded by the timeout (not abortable, hence daemon workers)
            with self._lock:
                self._sock = conn.sock
                if self._aborted:
                    raise ConnectionAbortedError(f"aborted ({self._aborted})")
            conn.request(
                "POST",
                (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                body=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            response = conn.getresponse()
            status, headers, data = response.status, response.headers, response.read()
        except (OSError, http.client.HTTPException):
            if self._aborted == "timeout":
                raise TimeoutError(
                    f"timed out: no complete answer within {self.timeout:g} s"
                ) from None
            raise
        finally:
            with self._lock:  # under the lock: abort() never shuts down a closed (reused) fd
                self._sock = None
                conn.close()
        text = data.decode("utf-8", errors="replace")
        try:
            return status, headers, json.loads(text)
        except ValueError:
            return status, headers, text


def _retry_after(headers: Any) -> float | None:
    """The ``Retry-After`` header's seconds (the HTTP-date form is not used: None)."""
    value = (headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


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
