"""The contract on the ground floor: an :class:`Endpoint` in, a :class:`TaskRun` out, and the
two ways a run ends without one.

Runners are functions ``run(task, suite, precision, endpoint, ...) -> TaskRun`` (see
:mod:`quantgate.runners.registry`); the gate and the baselines never know which runner made a
TaskRun. Items are the unit of truth: every aggregate is computed from ``scores``.

A runner that cannot run here raises :class:`NotRunnable` (a missing package or data file: the
case is skipped with the message as its reason); one that ran and broke raises
:class:`RunError` (the case fails with the message). Nothing else needs translating.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantgate.jsonl import write_jsonl


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: ``Endpoint("http://127.0.0.1:8000/v1", "Qwen/Qwen3-32B")``."""

    base_url: str  # ends with /v1
    model: str  # the served model name, sent exactly as the server expects it
    engine: str = "external"  # vllm | transformers | external
    engine_version: str | None = None
    checkpoint: str | None = None  # as the suite names it; for external endpoints the URL given
    revision: str | None = None  # what pins the checkpoint's weights (the tiny model's build key)

    @property
    def chat_completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def external(self) -> bool:
        return self.engine == "external"

    def provenance(self) -> dict[str, str | None]:
        """What a baseline records about the server (URL and served model only for external
        endpoints: a managed server's are this session's port and the name it was given)."""
        return answerer_provenance(self.answerer())

    def answerer(self) -> dict[str, str | None]:
        """What answers this endpoint's requests, for the generation caches (see
        :func:`answerer_identity`)."""
        if self.external:
            return answerer_identity(
                engine=self.engine,
                engine_version=self.engine_version,
                endpoint=self.base_url,
                served_model=self.model,
            )
        return answerer_identity(
            engine=self.engine,
            engine_version=self.engine_version,
            checkpoint=self.checkpoint,
            revision=self.revision,
        )


def answerer_identity(
    *,
    engine: str,
    engine_version: str | None = None,
    checkpoint: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    served_model: str | None = None,
) -> dict[str, str | None]:
    """What answered a request, as the generation caches key it: a managed server by engine,
    engine version, checkpoint and revision (its port and served name change every session); an
    external deployment by its URL, served model id and (when it says) engine version. Two
    answerers with different identities never share a cached answer."""
    return {
        "engine": engine,
        "engine_version": engine_version,
        "checkpoint": checkpoint,
        "revision": revision,
        "endpoint": endpoint,
        "served_model": served_model,
    }


def answerer_provenance(answerer: Mapping[str, Any]) -> dict[str, str | None]:
    """The part of an answerer a run's provenance records: engine, engine version, and for an
    external deployment its URL and served model."""
    return {k: answerer.get(k) for k in ("engine", "engine_version", "endpoint", "served_model")}


def answerer_key(answerer: Mapping[str, Any]) -> str:
    """A short stable hash of an :func:`answerer_identity` (a cache folder name)."""
    text = json.dumps(dict(answerer), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PendingEndpoint:
    """A server not started yet whose answerer is already known: runners key their caches by
    ``answerer`` and call the object (``start``) only when a request must be sent."""

    answerer: dict[str, str | None]
    start: Callable[[], Endpoint]

    def __call__(self) -> Endpoint:
        return self.start()


@dataclass
class TaskRun:
    """Per-item scores of one (suite, task, precision) and how they came about."""

    task: str
    precision: str
    scores: dict[str, float]  # item id -> score in [0, 1] (mean over repeats)
    truncated: int = 0  # responses cut off inside a think block (never credited)
    empty: int = 0  # responses with no answer text at all
    samples_path: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    # indicator -> item -> share of its samples flagged (quantgate.hygiene; flagged items only)
    hygiene: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return math.fsum(self.scores.values()) / len(self.scores) if self.scores else math.nan

    def to_json(self) -> str:
        """The run as ``run.json`` keeps it (everything but the samples, which are
        ``samples.jsonl`` beside it)."""
        data = {
            "task": self.task,
            "precision": self.precision,
            "truncated": self.truncated,
            "empty": self.empty,
            "provenance": self.provenance,
            "hygiene": self.hygiene,
            "scores": self.scores,
        }
        return json.dumps(data, indent=1, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, *, samples_path: Path | None = None) -> TaskRun:
        data = json.loads(text)
        return cls(
            task=data["task"],
            precision=data["precision"],
            scores={str(k): float(v) for k, v in data["scores"].items()},
            truncated=int(data.get("truncated", 0)),
            empty=int(data.get("empty", 0)),
            samples_path=samples_path,
            provenance=dict(data.get("provenance") or {}),
            hygiene={k: dict(v) for k, v in (data.get("hygiene") or {}).items()},
        )

    @classmethod
    def load(cls, path: Path, *, samples_path: Path | None = None) -> TaskRun:
        """A stored ``run.json``; ValueError naming the file when it is not one (not UTF-8, not
        JSON, fields missing or of the wrong kind)."""
        try:
            return cls.from_json(path.read_text(encoding="utf-8"), samples_path=samples_path)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a stored run ({exc!r}); run the case again") from None


class NotRunnable(RuntimeError):
    """The case cannot run on this machine (a package or a data file is missing); the message
    says what is missing and how to get it. The plugin skips the case with it."""


class RunError(RuntimeError):
    """The case ran and broke (a scorer error, no isolation for model-written code, unusable
    questions); the message says what and where. The plugin fails the case with it."""


def finish_run(
    task: str,
    precision: str,
    per_item: Mapping[str, list[float]],
    samples: Iterable[Mapping[str, Any]],
    *,
    out_dir: Path,
    provenance: dict[str, Any],
) -> TaskRun:
    """Write ``out_dir/samples.jsonl`` and build the TaskRun: each item's score is the mean of
    its repeats; ``truncated`` / ``empty`` count the samples flagged so, ``hygiene`` holds each
    flag's per-item rates (:func:`quantgate.hygiene.item_rates`)."""
    from quantgate.hygiene import item_rates

    samples = list(samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / "samples.jsonl"
    write_jsonl(samples_path, samples)
    return TaskRun(
        task=task,
        precision=precision,
        scores={item: sum(v) / len(v) for item, v in per_item.items()},
        truncated=sum(bool(s.get("truncated")) for s in samples),
        empty=sum(bool(s.get("empty")) for s in samples),
        samples_path=samples_path,
        provenance=provenance,
        hygiene=item_rates(samples),
    )
