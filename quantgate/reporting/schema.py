"""``report.json``: the data of one report folder, as pydantic models (``schema_version`` 1).

:class:`Report` is the schema; ``docs/report-schema.md`` shows its JSON Schema
(``Report.model_json_schema()``), and a test keeps the two equal. Scores and differences are
fractions (0.873, −0.012), never percent; every field a case may not have is ``null``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrecisionSetup(_Model):
    precision: str
    checkpoint: str
    revision: str | None = None  # what pins the weights (the tiny model's build key)
    quantization: str | None = None  # vLLM's on-the-fly --quantization
    engine: str | None = None  # vllm | transformers | external
    engine_version: str | None = None
    endpoint: str | None = None  # --server-url deployments only
    served_model: str | None = None


class SuiteSetup(_Model):
    name: str
    model: str
    reference: str
    file: str | None = None
    file_sha256: str | None = None
    tensor_parallel_size: int | None = None
    precisions: list[PrecisionSetup]


class TaskResult(_Model):
    """One (task, precision): its score and, for a candidate, the gate's verdict."""

    suite: str
    task: str
    precision: str
    vs: str  # the reference precision, or "own history" / "written" / "replaced"
    n: int | None = None
    score: float | None = None
    reference_score: float | None = None
    relative: float | None = None  # score / reference_score (the reference = 1.0)
    diff: float | None = None  # score - reference_score over the same items
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float | None = None
    flips_down: int | None = None
    flips_up: int | None = None
    mde: float | None = None
    verdict: str
    required_n: int | None = None
    # the gate's one-sided p-values (quantgate.gate.Verdict): of "the true difference is <=
    # -margin" (small: non-inferior, PASS) and of the FAIL rule's significance test ("true
    # difference >= 0", ">= -margin" under fail: strict; FAIL also needs the point estimate
    # beyond the margin); for a sequential run its repeated p-values, valid at the design's alpha
    p_noninferiority: float | None = None
    p_drop: float | None = None
    # a sequential run: the look's own p-values, at the look's nominal alphas
    look_p_noninferiority: float | None = None
    look_p_drop: float | None = None
    # the reference's own history compared answers from the generation cache with its
    # baseline, not a new run with the old one
    cached: bool = False
    # a sequential run (quantgate.sequential): the look it stopped at, of ``looks``; ``n`` is the
    # items it generated, ``total`` the task's
    look: int | None = None
    looks: int | None = None
    total: int | None = None
    samples: str | None = None


class Host(_Model):
    machine: str
    system: str
    cpu_count: int | None = None
    gpus: list[str] = []
    python: str


class Artifacts(_Model):
    quantgate_dir: str | None = None
    runs: str | None = None  # samples.jsonl and run.json per case
    server_logs: list[str] = []
    baselines: str | None = None


class Report(_Model):
    schema_version: int = SCHEMA_VERSION
    created: str  # ISO 8601, UTC
    host: Host
    suites: list[SuiteSetup]
    tasks: list[TaskResult]
    suite_verdicts: list[dict[str, Any]] = []  # one per (suite, precision) when computed
    livebench: list[dict[str, Any]] = []  # quantgate.report.livebench_record rows
    throughput: list[dict[str, Any]] = []  # quantgate.report.throughput_record rows
    hygiene: list[dict[str, Any]] = []  # quantgate.hygiene.hygiene_record rows
    artifacts: Artifacts
