"""The suite schema: one YAML per model family, validated with pydantic (loading, profiles and
error wording: :mod:`quantgate.suites`).

    >>> suite = load_suite("tests/accuracy/suites/tiny.yaml")      # doctest: +SKIP
    >>> suite.name, list(suite.precisions), suite.reference        # doctest: +SKIP
    ('tiny', ['bf16', 'fp8', 'nvfp4', 'int2'], 'bf16')

A bad file raises :class:`SuiteError` naming the file and, for every problem, the key path, what
was found and what is expected::

    tests/accuracy/suites/tiny.yaml: 1 problem
      tasks.arith.gate.margin: found 'five' (str); expected a number
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quantgate.gate import FAIL_RULES, METHODS, THRESHOLD_METHODS

# Names appear in test ids, <suite>-<task>-<precision>: task and precision names have no dashes;
# a suite's name (its file stem, e.g. qwen3-32b) may.
NAME = r"^[a-z0-9][a-z0-9_.]*$"
SUITE_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file, key paths and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VllmArgs(_Strict):
    """``vllm serve`` settings (per suite; a precision may add ``server_args``)."""

    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, ge=16)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_num_seqs: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    disable_custom_all_reduce: bool = False
    attention_backend: str | None = None  # vLLM >= 0.26: a flag, no longer VLLM_ATTENTION_BACKEND
    dtype: str | None = None
    extra_args: list[str] = []


class EngineConfig(_Strict):
    kind: Literal["vllm", "transformers", "auto"] = "auto"
    startup_timeout: float = Field(600.0, gt=0)
    shutdown_timeout: float = Field(30.0, gt=0)
    env: dict[str, str] = {}
    vllm: VllmArgs = VllmArgs()
    transformers_args: list[str] = []

    @field_validator("env")
    @classmethod
    def _no_removed_env(cls, env: dict[str, str]) -> dict[str, str]:
        if "VLLM_ATTENTION_BACKEND" in env:
            raise ValueError(
                "VLLM_ATTENTION_BACKEND is no longer read by vLLM >= 0.26; "
                "set engine.vllm.attention_backend instead"
            )
        return env


REQUIREMENT = r"^(env:\S+|module:\S+|gpu)$"  # checked by quantgate.cases.requirement_met
Requirement = Annotated[str, Field(pattern=REQUIREMENT)]


class Precision(_Strict):
    checkpoint: str  # hub id, local path, or tiny://<precision> for the embedded model
    quantization: str | None = None  # vLLM --quantization (e.g. fp8 for online FP8)
    server_args: list[str] = []
    env: dict[str, str] = {}
    expect: Literal["pass", "fail"] = "pass"  # "fail": a planted broken precision (strict xfail)
    requires: list[Requirement] = []  # e.g. "gpu": its cases skip with that reason when unmet


class Generation(_Strict):
    temperature: float = Field(0.0, ge=0)
    max_gen_toks: int = Field(256, ge=1)
    system_instruction: str | None = None
    chat_template_kwargs: dict[str, Any] = {}
    seed: int | None = 1234


class GateConfig(_Strict):
    """A task's gate (quantgate.gate.compare): ``{method: paired, margin: 0.02}``; ``fail:
    strict`` FAILs only when the upper bound is below -margin (alpha-controlled) instead of
    when the drop is significant and beyond the margin (a drop equal to the margin FAILs about
    half the time)."""

    method: str = "paired"
    margin: float | None = Field(0.02, ge=0, lt=1)
    threshold: float | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    beta: float = Field(0.2, gt=0, lt=1)
    fail: Literal[FAIL_RULES] = "default"

    @model_validator(mode="after")
    def _rule_has_its_parameter(self) -> GateConfig:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.method in THRESHOLD_METHODS and self.threshold is None:
            raise ValueError(f"method {self.method!r} needs 'threshold' (e.g. 0.95 / 0.08)")
        return self


RUNNERS = ("lmeval", "livebench", "livecodebench", "scicode")
# Task keys added after baselines existed: left out of task_config_hash while unset.
LATER_TASK_KEYS = ("release", "categories", "tasks", "questions_dir", "scorer", "code")


class CodeTask(_Strict):
    """Settings of the code runners (``livecodebench``, ``scicode``); quantgate.runners.code."""

    dataset: str | None = None  # hub id (livecodebench/code_generation_lite, SciCode1/SciCode)
    revision: str | None = None  # hub revision (a commit) pinning the dataset
    version: str | None = None  # LiveCodeBench version_tag: release_v1..v6, v4_v5, ...
    start_date: date | None = None  # LiveCodeBench contest_date window, both ends inclusive
    end_date: date | None = None
    split: Literal["validation", "test"] = "test"  # SciCode
    path: str | None = None  # local JSONL with the dataset's fields (relative to the suite file)
    h5_path: str | None = None  # SciCode's test_data.h5 (relative to the suite file, or ~/...)
    with_background: bool = False  # SciCode: step backgrounds in the prompt
    items: Literal["problems", "steps"] = "problems"  # SciCode: what the gate pairs
    prompt: str | None = None  # a template over the row's fields, replacing the benchmark's prompt
    extraction: Literal["fenced", "tiny_answer"] = "fenced"  # tiny_answer: the tiny suite only
    test_timeout: float = Field(6.0, gt=0)  # seconds per test (SciCode: per step)
    memory_mb: int = Field(4096, ge=64)  # address space per process
    workers: int = Field(4, ge=1)  # sandboxed programs at once
    exclude: list[str] = []  # problem ids left out (e.g. LiveCodeBench's ERRATA.md)


class Sequential(_Strict):
    """Sequential early stopping of a candidate's run (quantgate.sequential): its items, in a
    seeded order the same for every precision, in ``looks`` chunks; after each chunk the paired
    gate checks O'Brien-Fleming-type boundaries on both sides and generation stops once PASS or
    FAIL is settled. ``looks: 1`` is the fixed design (a task opting out of a suite default)."""

    looks: int = Field(ge=1, le=20)


class Task(_Strict):
    runner: Literal[RUNNERS] = "lmeval"
    lmeval_task: str | None = None
    metric: str | None = None  # runner lmeval: "<metric>,<filter>", e.g. "integer_match,none"
    limit: int | None = Field(None, ge=1)
    repeats: int = Field(1, ge=1)
    num_concurrent: int = Field(1, ge=1)
    timeout: float = Field(3600.0, gt=0)  # s per request attempt; our client: 2x per request
    gen_kwargs: dict[str, Any] = {}
    data_files: dict[str, str] = {}  # split -> local file (relative to the suite file)
    gate: GateConfig = GateConfig()
    requires: list[Requirement] = []  # e.g. "env:HF_TOKEN": skipped with that reason when unmet
    skip: str | None = None  # a reason: the case is collected and skipped (placeholders)
    # runner livebench: the release, optional category/task filters, local questions (a folder laid
    # out like LiveBench's data/, relative to the suite file; default: the hub datasets) and the
    # scorer ("module:function", called as f(question, answer_text) -> score in [0, 1]; default:
    # LiveBench's own per-task scorers from the installed livebench package)
    release: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    categories: list[str] = []
    tasks: list[str] = []
    questions_dir: str | None = None
    scorer: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    code: CodeTask | None = None  # runners livecodebench and scicode
    # quantgate.sequential: {looks: K}; default the suite's ``sequential`` (paired tasks only)
    sequential: Sequential | None = None

    @model_validator(mode="after")
    def _sequential_needs_the_paired_gate(self) -> Task:
        if self.sequential and self.sequential.looks > 1 and self.gate.method != "paired":
            raise ValueError(
                f"sequential needs gate.method 'paired' (its boundaries are the paired test's), "
                f"not {self.gate.method!r}; drop 'sequential' or set looks: 1"
            )
        return self

    @model_validator(mode="after")
    def _runner_has_its_task(self) -> Task:
        if self.runner == "lmeval" and not self.lmeval_task:
            raise ValueError(
                "runner 'lmeval' needs 'lmeval_task' (ours in quantgate/tasks/ or "
                "one lm-eval ships, e.g. mmlu_pro)"
            )
        if self.runner == "lmeval" and not self.metric:
            raise ValueError("runner 'lmeval' needs 'metric' (e.g. 'integer_match,none')")
        if self.runner == "livebench" and not self.release:
            raise ValueError("runner 'livebench' needs 'release' (e.g. 2024-11-25)")
        if self.runner == "livecodebench" and not (
            self.code and (self.code.path or self.code.version)
        ):
            raise ValueError(
                "runner 'livecodebench' needs 'code.version' (e.g. release_v5, with "
                "code.start_date/end_date) or 'code.path' (local JSONL)"
            )
        return self

    @field_validator("release", mode="before")
    @classmethod
    def _release_as_text(cls, release: Any) -> Any:
        return release.isoformat() if hasattr(release, "isoformat") else release  # YAML dates

    @field_validator("metric")
    @classmethod
    def _metric_has_filter(cls, metric: str | None) -> str | None:
        if metric is not None and metric.count(",") != 1:
            raise ValueError(
                "lm-eval's '<metric>,<filter>' key, e.g. "
                "'integer_match,none' or 'exact_match,custom-extract'"
            )
        return metric


class Throughput(_Strict):
    """The throughput case: ``requests`` chat completions of ``max_tokens`` each over a fixed
    prompt set, ``concurrency`` at a time (default: the suite's max_num_seqs, else 8)."""

    requests: int = Field(32, ge=1)
    max_tokens: int = Field(128, ge=1)
    concurrency: int | None = Field(None, ge=1)
    prompts: list[str] = []  # default: quantgate.serving.throughput's fixed prompt set


class Suite(_Strict):
    name: str = Field(pattern=SUITE_NAME)
    model: str
    reference: str = "bf16"
    engine: EngineConfig = EngineConfig()
    generation: Generation = Generation()
    precisions: dict[str, Precision]
    tasks: dict[str, Task]
    throughput: Throughput | None = None
    profiles: dict[str, dict[str, Any]] = {}  # name -> overrides of this suite's keys (--profile)
    # quantgate.family.suite_verdict: the family-wise alpha of one verdict per precision over
    # the suite's tasks (Holm); each task's own verdict keeps its own gate.alpha
    family_alpha: float = Field(0.05, gt=0, lt=1)
    # quantgate.hygiene: a candidate's truncated / empty / unanswerable share may rise this much
    hygiene_tolerance: float = Field(0.02, ge=0, lt=1)
    # quantgate.sequential: the default of every paired task without its own ``sequential``
    sequential: Sequential | None = None
    path: Path | None = None

    @field_validator("precisions", "tasks")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for key in value:
            if not re.match(NAME, key):
                raise ValueError(f"name {key!r} must match {NAME} (lower case, digits, _ and .)")
        if not value:
            raise ValueError("at least one entry is required")
        return value

    @model_validator(mode="after")
    def _reference_is_a_precision(self) -> Suite:
        if self.reference not in self.precisions:
            raise ValueError(
                f"reference {self.reference!r} is not one of the precisions "
                f"{sorted(self.precisions)}"
            )
        return self

    def resolve_path(self, path: str | Path) -> Path:
        """A path written in the suite: ``~`` expanded, relative to the suite file's folder (to
        the working directory for a suite made in code, without a file)."""
        expanded = Path(path).expanduser()
        if expanded.is_absolute():
            return expanded
        base = self.path.parent if self.path else Path.cwd()
        return (base / expanded).resolve()

    def gen_kwargs(self, task: str, seed: int | None, **defaults: Any) -> dict[str, Any]:
        """The generation settings of a task in lm-eval's vocabulary (``max_gen_toks``,
        ``until``): the suite's, then ``defaults`` (e.g. a question's temperature), then the
        task's own ``gen_kwargs``; ``seed`` when not None."""
        gen = self.generation
        kwargs: dict[str, Any] = {"temperature": gen.temperature, "max_gen_toks": gen.max_gen_toks}
        if gen.chat_template_kwargs:
            kwargs["chat_template_kwargs"] = dict(gen.chat_template_kwargs)
        kwargs.update(defaults)
        kwargs.update(self.tasks[task].gen_kwargs)
        if seed is not None:
            kwargs["seed"] = seed
        return kwargs

    def task_config_hash(self, task: str) -> str:
        """Hash of what determines a task's scores apart from the checkpoint."""
        spec = self.tasks[task].model_dump(mode="json", exclude={"gate", "sequential"})
        for key in LATER_TASK_KEYS:  # unset, they leave the hash (and older baselines) as it was
            if spec.get(key) in (None, [], {}):
                spec.pop(key, None)
        payload = {"task": spec, "generation": self.generation.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def request_params(gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Generation settings (lm-eval's vocabulary, :meth:`Suite.gen_kwargs`) as OpenAI
    chat-completion parameters, as lm-eval's ``local-chat-completions`` sends them:
    ``max_gen_toks`` -> ``max_tokens``, ``until`` -> ``stop``, ``do_sample`` dropped.

        >>> request_params({"temperature": 0.0, "max_gen_toks": 64, "until": ["\\n"], "seed": 1})
        {'temperature': 0.0, 'max_tokens': 64, 'stop': ['\\n'], 'seed': 1}
    """
    names = {"max_gen_toks": "max_tokens", "until": "stop"}
    return {
        names.get(key, key): value
        for key, value in gen_kwargs.items()
        if key != "do_sample" and not (key == "until" and not value)
    }
