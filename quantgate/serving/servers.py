"""An OpenAI-compatible server (``vllm serve`` / ``transformers serve``) as a context manager.

The process side (process group, parent-death signal, teardown) lives in
:mod:`quantgate.serving.processes`; this module builds the commands and environments and decides
when the server is ready::

    port = free_port()
    argv = transformers_serve_command(ckpt, host="127.0.0.1", port=port)
    env = transformers_serve_env(out / "hf-cache")
    with Server(argv, port=port, served_model=str(ckpt), env=env, log_path=out / "server.log") as s:
        ...  # s.base_url == f"http://127.0.0.1:{port}/v1"

Readiness: poll ``health_path`` every 0.25 s until it answers 200, then run ``ready_checks`` in
order. A check is ``check(server) -> bool | None``: ``False`` means "not yet, ask again", anything
else passes, an exception fails the start. All of it shares ``startup_timeout``; the process is
polled throughout, so a server that dies while starting fails within about a second. Once ready,
the port's listening socket must belong to the started process or one of its descendants
(psutil): an impostor already listening there fails the start with both pids
(:class:`ServerImpostor`) instead of answering in our server's place.

After the start, :meth:`Server.exit_report` says whether the process is gone, with its exit code,
how long after the start it died, and the log's last lines.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from quantgate.runs import RunError
from quantgate.serving.processes import ManagedProcess

__all__ = [
    "ReadyCheck",
    "Server",
    "ServerError",
    "ServerImpostor",
    "ServerStartError",
    "ServerStartTimeout",
    "chat_warmup",
    "free_port",
    "http_json",
    "models_include",
    "transformers_serve_command",
    "transformers_serve_env",
    "vllm_serve_command",
    "vllm_serve_env",
]

ReadyCheck = Callable[["Server"], "bool | None"]

# --------------------------------------------------------------------------------------- commands


def _transformers_cli() -> list[str]:
    script = Path(sys.executable).parent / "transformers"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    # The module has a __main__ guard; this works where the console script was not installed.
    return [sys.executable, "-m", "transformers.cli.transformers"]


def transformers_serve_command(
    checkpoint: str | os.PathLike,
    *,
    host: str,
    port: int,
    device: str = "cpu",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``transformers serve CKPT --host H --port P --device D``. The checkpoint is passed
    positionally so it is preloaded (``/health`` is 200 only once loaded); requests must name it
    exactly as given here."""
    return [
        *_transformers_cli(),
        "serve",
        os.fspath(checkpoint),
        "--host",
        host,
        "--port",
        str(port),
        "--device",
        device,
        *extra_args,
    ]


def vllm_serve_command(
    checkpoint: str | os.PathLike,
    *,
    host: str,
    port: int,
    served_model_name: str | None = None,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    max_num_seqs: int | None = None,
    enforce_eager: bool = False,
    disable_custom_all_reduce: bool = False,
    attention_backend: str | None = None,
    quantization: str | None = None,
    dtype: str | None = None,
    seed: int | None = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """vLLM's OpenAI server via ``python -m`` (works where the ``vllm`` script or dist metadata is
    missing).

    ``attention_backend`` becomes ``--attention-backend`` (vLLM >= 0.26 dropped
    ``VLLM_ATTENTION_BACKEND``).
    """
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        os.fspath(checkpoint),
        "--host",
        host,
        "--port",
        str(port),
    ]
    opts: list[tuple[str, Any]] = [
        ("--served-model-name", served_model_name),
        ("--dtype", dtype),
        ("--quantization", quantization),
        ("--tensor-parallel-size", tensor_parallel_size),
        ("--max-model-len", max_model_len),
        ("--gpu-memory-utilization", gpu_memory_utilization),
        ("--max-num-seqs", max_num_seqs),
        ("--attention-backend", attention_backend),
        ("--seed", seed),
    ]
    argv += [a for flag, v in opts if v is not None for a in (flag, str(v))]
    argv += ["--enforce-eager"] if enforce_eager else []
    argv += ["--disable-custom-all-reduce"] if disable_custom_all_reduce else []
    return [*argv, *extra_args]


def transformers_serve_env(
    hub_cache: str | os.PathLike, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for ``transformers serve``: offline, and ``HF_HUB_CACHE`` at an existing (empty)
    directory, created here; without it ``/v1/models`` answers 500."""
    Path(hub_cache).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=os.fspath(hub_cache),
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def vllm_serve_env(
    base: Mapping[str, str] | None = None, *, offline: bool = True, **extra: str
) -> dict[str, str]:
    """Environment for vLLM: no usage stats, offline hub by default, plus ``extra`` variables."""
    env = dict(os.environ if base is None else base)
    env.update(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def listening_pids(port: int, among: Sequence[int] | None = None) -> list[int]:
    """Pids with a TCP socket listening on ``port``: among the given processes (their own
    sockets, readable without privileges), or system-wide (pids of other users' processes are
    only known to root)."""
    if among is not None:
        found = []
        for pid in among:
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                found.append(pid)
        return found
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return []
    return sorted(
        {
            c.pid
            for c in conns
            if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        }
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- HTTP

_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # never send localhost via a proxy


def http_json(url: str, payload: Any = None, *, timeout: float = 5.0) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON); returns ``(status, parsed body or text)``; raises OSError
    if unreachable."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    text = body.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def models_include(name: str | None = None) -> ReadyCheck:
    """Ready check: ``/v1/models`` lists ``name`` (default: the server's ``served_model``). Not for
    ``transformers serve``, whose list never contains a local model."""

    def check(server: Server) -> bool:
        status, body = http_json(f"{server.base_url}/models")
        ids = (
            [m.get("id") for m in body.get("data", [])]
            if status == 200 and isinstance(body, dict)
            else []
        )
        return (name or server.served_model) in ids

    check.__qualname__ = f"models_include({name or 'served_model'})"
    return check


def chat_warmup(max_tokens: int = 1, timeout: float = 120.0) -> ReadyCheck:
    """Ready check: one greedy chat completion with the served model must return 200."""

    def check(server: Server) -> None:
        payload = {
            "model": server.served_model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        status, body = http_json(f"{server.base_url}/chat/completions", payload, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"warm-up chat completion returned HTTP {status}: {str(body)[:500]}")

    check.__qualname__ = "chat_warmup"
    return check


# --------------------------------------------------------------------------------------- server


class ServerError(RunError):
    """A server could not be started, or died; a :class:`~quantgate.runs.RunError`, so the case
    fails with the message (command, log path and log tail)."""


class ServerStartError(ServerError):
    """The server process exited, or a ready check failed, while starting."""


class ServerImpostor(ServerStartError):
    """Another process, not the one we started, listens on the server's port."""


class ServerStartTimeout(ServerError, TimeoutError):
    """The server did not become ready within ``startup_timeout``."""


class Server:
    """One server process, ready on enter and gone on exit (see the module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log_path: str | os.PathLike,
        served_model: str | None = None,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        health_path: str = "/health",
        startup_timeout: float = 600.0,
        poll_interval: float = 0.25,
        ready_checks: Sequence[ReadyCheck] = (),
        stop_timeout: float = 30.0,
        death_signal: int | None = signal.SIGTERM,
        log_tail_bytes: int = 3072,
    ) -> None:
        self.host, self.port, self.served_model = host, port, served_model
        self.health_path, self.startup_timeout, self.poll_interval = (
            health_path,
            startup_timeout,
            poll_interval,
        )
        self.ready_checks = list(ready_checks)
        self.log_tail_bytes = log_tail_bytes
        self.process = ManagedProcess(
            argv,
            log_path=log_path,
            env=env,
            cwd=cwd,
            stop_timeout=stop_timeout,
            death_signal=death_signal,
        )
        self.startup_seconds: float | None = None
        self._started_at: float | None = None

    root_url = property(lambda self: f"http://{self.host}:{self.port}")
    base_url = property(lambda self: f"{self.root_url}/v1")
    log_path = property(lambda self: self.process.log_path)
    pid = property(lambda self: self.process.pid)
    argv = property(lambda self: self.process.argv)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> Server:
        t0 = self._started_at = time.monotonic()
        try:
            self.process.start()
        except OSError as e:  # e.g. the executable does not exist
            raise ServerStartError(
                f"cannot start server: {e}\n  command: {shlex.join(self.argv)}"
            ) from e
        try:
            self._wait_ready(t0 + self.startup_timeout)
            self._check_owner()
        except (
            BaseException
        ):  # includes KeyboardInterrupt: __exit__ does not run when __enter__ raises
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        with open(self.log_path, "a") as log:  # the server writes here too: one whole line
            log.write(
                f"# quantgate: ready after {self.startup_seconds:.1f} s "
                f"(/health and {len(self.ready_checks)} ready checks)\n"
            )
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def exit_report(self) -> str | None:
        """None while the process runs; else what happened: exit code, seconds after the start,
        the log's last lines."""
        rc = self.process.poll()
        if rc is None:
            return None
        after = "" if self._started_at is None else f" {time.monotonic() - self._started_at:.1f} s"
        tail = self.process.log_tail(self.log_tail_bytes).rstrip()
        return (
            f"server (pid {self.pid}) exited with {rc}{after} after it was started; "
            f"last lines of {self.log_path}:\n{tail}"
        )

    def _check_owner(self) -> None:
        """The socket listening on our port belongs to our process tree, else fail with both
        pids (the impostor's where the system tells it)."""
        ours = [self.process.pid, *(p.pid for p in self.process.record_descendants())]
        if listening_pids(self.port, ours):
            return
        others = listening_pids(self.port) or ["unknown (not visible to this user)"]
        self._check_alive("checking who listens on the port")
        raise ServerImpostor(
            self._context(
                f"port {self.port} answers, but not from the server we started (pid "
                f"{self.process.pid}): it listens in pid {', '.join(map(str, others))}; stop "
                "that process or free the port"
            )
        )

    def _context(self, headline: str) -> str:
        tail = self.process.log_tail(self.log_tail_bytes).rstrip()
        return (
            f"{headline}\n  command: {shlex.join(self.argv)}\n  log: {self.log_path}\n"
            f"--- last {self.log_tail_bytes} bytes of the log ---\n{tail}\n--- end of log ---"
        )

    def _check_alive(self, stage: str) -> None:
        rc = self.process.poll()
        if rc is not None:
            raise ServerStartError(self._context(f"server exited with code {rc} while {stage}"))

    def _wait_ready(self, deadline: float) -> None:
        pending: list[tuple[str, ReadyCheck]] = [("GET " + self.health_path, self._health)]
        pending += [(getattr(c, "__qualname__", repr(c)), c) for c in self.ready_checks]
        for label, check in pending:
            while True:
                self._check_alive(f"waiting for {label}")
                try:
                    ok = check(self) is not False
                except (
                    OSError,
                    http.client.HTTPException,
                ):  # not listening yet, reset, slow answer
                    ok = False
                except Exception as e:
                    self._check_alive(f"waiting for {label}")
                    raise ServerStartError(
                        self._context(f"ready check {label} failed: {e!r}")
                    ) from e
                if ok:
                    break
                if time.monotonic() >= deadline:
                    self._check_alive(f"waiting for {label}")
                    raise ServerStartTimeout(
                        self._context(
                            f"server not ready after {self.startup_timeout:g} s "
                            f"(still waiting for {label})"
                        )
                    )
                time.sleep(self.poll_interval)

    def _health(self, _server: Server) -> bool:
        status, _ = http_json(self.root_url + self.health_path, timeout=2.0)
        return status == 200
