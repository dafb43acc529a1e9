"""From a suite's precision to a running server: engine choice, checkpoint, command line.

    >>> plan = plan_server(suite, "fp8", out_dir=Path(".quantgate/out"),
    ...                    cache_dir=Path(".quantgate/cache"))                 # doctest: +SKIP
    >>> with start_server(plan) as server:                                    # doctest: +SKIP
    ...     endpoint = plan.endpoint(server.base_url)

``engine.kind: auto`` picks vLLM when a CUDA GPU and vllm are present, else ``transformers
serve`` on the CPU. ``tiny://<precision>`` checkpoints are the embedded tiny model, built into
the cache on first use from the suite's own question files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from quantgate import tiny
from quantgate.config import Suite
from quantgate.runs import Endpoint, PendingEndpoint, answerer_identity
from quantgate.serving.servers import (
    Server,
    ServerError,
    chat_warmup,
    free_port,
    models_include,
    transformers_serve_command,
    transformers_serve_env,
    vllm_serve_command,
    vllm_serve_env,
)

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerPlan:
    """Everything needed to start one precision's server, decided before anything starts."""

    engine: str  # "vllm" | "transformers"
    engine_version: str | None
    checkpoint: str  # as configured (hub id, path, tiny://...)
    model_path: str  # what the server loads
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    startup_timeout: float
    shutdown_timeout: float
    served_model: str
    checks: list = field(default_factory=list)
    revision: str | None = None  # tiny.revision: what pins a tiny:// checkpoint's weights

    def endpoint(self, base_url: str) -> Endpoint:
        return Endpoint(
            base_url=base_url,
            model=self.served_model,
            engine=self.engine,
            engine_version=self.engine_version,
            checkpoint=self.checkpoint,
            revision=self.revision,
        )


def session_id() -> str:
    """This process's session name: its start time (UTC) and pid, e.g. ``20261201T181500Z-4242``."""
    started = datetime.fromtimestamp(psutil.Process().create_time(), UTC)
    return f"{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"


def cuda_available() -> bool:
    """A CUDA GPU is visible (nvidia-smi, or torch if it is importable)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return shutil.which("nvidia-smi") is not None


def resolve_engine(kind: str) -> str:
    """``auto`` -> ``vllm`` when a CUDA GPU and vllm are present, else ``transformers``."""
    if kind != "auto":
        return kind
    if importlib.util.find_spec("vllm") is not None and cuda_available():
        return "vllm"
    return "transformers"


def engine_version(engine: str) -> str | None:
    try:
        return version("vllm" if engine == "vllm" else "transformers")
    except PackageNotFoundError:
        return None


def resolve_checkpoint(suite: Suite, precision: str, cache_dir: Path) -> str:
    """The path or hub id the server loads for a precision; builds the tiny model if needed."""
    checkpoint = suite.precisions[precision].checkpoint
    if tiny.is_tiny(checkpoint):
        return str(tiny.checkpoint_dir(suite, precision, cache_dir))
    local = suite.resolve_path(checkpoint)
    return str(local) if checkpoint.startswith(".") and local.exists() else checkpoint


def server_log_name(session: str) -> str:
    """A server log's file name in ``<runs>/<suite>/<precision>/``: the session's id (UTC start
    time first, so names sort by time), or ``*`` to glob every session's."""
    return f"server-{session}.log"


def plan_server(
    suite: Suite,
    precision: str,
    *,
    out_dir: Path,
    cache_dir: Path,
    engine: str | None = None,
    worker_id: str | None = None,
    session: str | None = None,
) -> ServerPlan:
    """Decide engine, checkpoint, port, command and environment for one precision.

    ``worker_id`` (pytest-xdist's ``gw0``, ``gw1``...) gives the vLLM server its own slice of
    the visible GPUs (``CUDA_VISIBLE_DEVICES``), ``tensor_parallel_size`` GPUs per worker.
    The server log is ``out_dir/<suite>/<precision>/server-<session>.log`` (default: this
    process's :func:`session_id`), so two sessions sharing an output folder never write one
    log."""
    prec, eng = suite.precisions[precision], suite.engine
    kind = resolve_engine(engine or eng.kind)
    model_path = resolve_checkpoint(suite, precision, cache_dir)
    port = free_port(HOST)
    log_dir = out_dir / suite.name / precision
    log_dir.mkdir(parents=True, exist_ok=True)
    if kind == "vllm":
        v = eng.vllm
        served = f"{suite.name}-{precision}"
        argv = vllm_serve_command(
            model_path,
            host=HOST,
            port=port,
            served_model_name=served,
            tensor_parallel_size=v.tensor_parallel_size,
            max_model_len=v.max_model_len,
            gpu_memory_utilization=v.gpu_memory_utilization,
            max_num_seqs=v.max_num_seqs,
            enforce_eager=v.enforce_eager,
            disable_custom_all_reduce=v.disable_custom_all_reduce,
            attention_backend=v.attention_backend,
            quantization=prec.quantization,
            dtype=v.dtype,
            extra_args=[*v.extra_args, *prec.server_args],
        )
        env = vllm_serve_env(**eng.env, **prec.env)
        if worker_id is not None:
            from quantgate.serving.gpus import gpu_slice

            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_slice(worker_id, v.tensor_parallel_size))
        checks = [models_include(served), chat_warmup()]
    else:
        if prec.quantization:
            raise ValueError(
                f"{suite.path}: precisions.{precision}.quantization "
                f"{prec.quantization!r} needs engine vllm (on-the-fly quantization);"
                " transformers serve loads the checkpoint as stored"
            )
        served = model_path  # transformers serve only answers to the name it was given
        argv = transformers_serve_command(
            model_path, host=HOST, port=port, extra_args=[*eng.transformers_args, *prec.server_args]
        )
        env = transformers_serve_env(log_dir / "hf-hub-cache")
        env.update(eng.env, **prec.env)
        checks = [chat_warmup()]
    return ServerPlan(
        engine=kind,
        engine_version=engine_version(kind),
        checkpoint=prec.checkpoint,
        model_path=model_path,
        argv=argv,
        env=env,
        port=port,
        log_path=log_dir / server_log_name(session or session_id()),
        startup_timeout=eng.startup_timeout,
        shutdown_timeout=eng.shutdown_timeout,
        served_model=served,
        checks=checks,
        revision=tiny.revision(suite, precision),
    )


def managed_answerer(suite: Suite, precision: str, engine: str | None = None) -> dict:
    """The answerer (:func:`~quantgate.runs.answerer_identity`) of the server
    :func:`plan_server` would start, known without building or starting anything; equal to
    ``plan.endpoint(url).answerer()``."""
    kind = resolve_engine(engine or suite.engine.kind)
    return answerer_identity(
        engine=kind,
        engine_version=engine_version(kind),
        checkpoint=suite.precisions[precision].checkpoint,
        revision=tiny.revision(suite, precision),
    )


def start_server(plan: ServerPlan) -> Server:
    """A :class:`~quantgate.serving.servers.Server` for the plan (use it as a context manager)."""
    return Server(
        plan.argv,
        port=plan.port,
        served_model=plan.served_model,
        env=plan.env,
        log_path=plan.log_path,
        startup_timeout=plan.startup_timeout,
        stop_timeout=plan.shutdown_timeout,
        ready_checks=plan.checks,
    )


def external_endpoint(server_url: str) -> Endpoint:
    """An already running OpenAI-compatible server: the served model comes from ``/v1/models``,
    the engine version from ``/version`` where the server has one (vLLM does)."""
    import http.client

    from quantgate.serving.servers import http_json

    base = server_url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    try:
        status, body = http_json(f"{base}/models", timeout=30)
    except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a bad URL
        raise ServerError(
            f"--server-url {server_url}: cannot reach {base}/models ({type(exc).__name__}: {exc})"
        ) from None
    data = body.get("data") if status == 200 and isinstance(body, dict) else None
    ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    if len(ids) != 1:
        raise ServerError(
            f"--server-url {server_url}: {base}/models answered HTTP {status} "
            f"with models {ids}; expected exactly one served model"
        )
    try:
        status, body = http_json(base.removesuffix("/v1") + "/version", timeout=5)
        found = body.get("version") if status == 200 and isinstance(body, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        found = None
    return Endpoint(
        base_url=base,
        model=ids[0],
        engine="external",
        engine_version=str(found) if found else None,
        checkpoint=server_url,
    )


def stop_server(server: Server, plan: ServerPlan) -> None:
    """Stop a started server; for vLLM, return only once its GPU memory is free again, so the
    next server never starts beside the last one's leftovers."""
    pids = [server.pid, *(p.pid for p in server.process.record_descendants())]
    server.stop()
    if plan.engine == "vllm":
        from quantgate.serving.gpus import wait_gpu_memory_released

        wait_gpu_memory_released(pids)


class ServerSlot:
    """At most one running server at a time, started when first needed.

        slot = ServerSlot(root=Path(".quantgate"))
        endpoint = slot.endpoint(suite, "bf16")   # starts bf16's server
        endpoint = slot.endpoint(suite, "bf16")   # the same one (if it still runs)
        endpoint = slot.endpoint(suite, "fp8")    # stops bf16's (GPU memory freed), starts fp8's
        slot.stop()

    With ``server_url`` no process is ever started: every precision is that deployment.
    ``worker_id`` (pytest-xdist's ``gw0`` ...) gives the servers the worker's GPU slice.

    Failures are remembered: a server that failed to start, or died (the process is polled on
    every :meth:`endpoint` and by :meth:`died`), raises the same :class:`ServerError` for the
    rest of the session for that precision (or, with ``server_url``, every precision), instead
    of each case starting a slow checkpoint again or retrying a dead port."""

    def __init__(
        self, root: Path, *, server_url: str | None = None, worker_id: str | None = None
    ) -> None:
        self.root, self.server_url, self.worker_id = Path(root), server_url, worker_id
        self.session = session_id()  # names this session's server logs
        self._running: tuple[tuple[str, str], Server, ServerPlan] | None = None
        self._endpoint: Endpoint | None = None
        self._failed: dict[tuple[str, str] | str, str] = {}

    def pending(self, suite: Suite, precision: str) -> PendingEndpoint:
        """The precision's endpoint, not started yet, with its answerer (an external server's
        ``/v1/models`` is asked now; nothing starts)."""
        if self.server_url:
            answerer = self.endpoint(suite, precision).answerer()
        else:
            answerer = managed_answerer(suite, precision)
        return PendingEndpoint(answerer, lambda: self.endpoint(suite, precision))

    def endpoint(self, suite: Suite, precision: str) -> Endpoint:
        key = self.server_url or (suite.name, precision)
        if key in self._failed:
            raise ServerError(self._failed[key])
        if self.server_url:
            if self._endpoint is None:
                self._endpoint = self._remember(key, lambda: external_endpoint(self.server_url))
            return self._endpoint
        if self._running is not None and self._running[0] == key:
            self._raise_if_dead()
        if self._running is not None and self._running[0] != key:
            self.stop()
        if self._running is None:
            plan = plan_server(
                suite,
                precision,
                out_dir=self.root / "runs",
                cache_dir=self.root / "cache",
                worker_id=self.worker_id,
                session=self.session,
            )
            server = self._remember(key, lambda: start_server(plan).start())
            self._running = (key, server, plan)
            self._endpoint = plan.endpoint(server.base_url)
        return self._endpoint

    def died(self) -> str | None:
        """If the running server has exited: the report (exit code, when, log tail), also
        remembered for its precision; else None."""
        try:
            self._raise_if_dead()
        except ServerError as exc:
            return str(exc)
        return None

    def _raise_if_dead(self) -> None:
        if self._running is None:
            return
        key, server, plan = self._running
        report = server.exit_report()
        if report is None:
            return
        self._running, self._endpoint = None, None
        server.stop()  # whatever it left behind
        message = f"the {key[1]} {plan.engine} {report}"
        self._failed[key] = f"{message}\n(an earlier case of this session saw it die)"
        raise ServerError(message)

    def _remember(self, key, start):
        try:
            return start()
        except ServerError as exc:
            self._failed[key] = f"{exc}\n(failed earlier in this session; not retried)"
            raise

    def stop(self) -> None:
        """Stop the running server, if any (see :func:`stop_server`)."""
        if self._running is not None:
            _, server, plan = self._running
            self._running, self._endpoint = None, None
            stop_server(server, plan)
