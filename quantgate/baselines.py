"""Stored per-item scores: ``baselines/<suite>/<task>/<precision>.json``.

A baseline keeps the summary (mean, stderr, n), every item's score, the gate it was taken under
and its provenance. Its *identity* — checkpoint, task config hash, generation parameters — says
which runs it may be compared with; the rest (date, hardware, versions) is informative::

    >>> b = Baseline.from_run(run, provenance)                          # doctest: +SKIP
    >>> stale_reasons(b, current_identity)                              # doctest: +SKIP
    ['checkpoint: baseline Qwen/Qwen3-32B, suite Qwen/Qwen3-32B-Base']
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantgate import tiny
from quantgate.config import Suite
from quantgate.gate import Summary
from quantgate.runs import TaskRun

IDENTITY_KEYS = (
    "checkpoint",
    "checkpoint_revision",
    "quantization",
    "task_config_hash",
    "generation",
)
FORMAT = 1


class BaselineError(ValueError):
    """A baseline file that is missing, unreadable or stale; the message says how to fix it."""


@dataclass(frozen=True)
class Baseline:
    items: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    # quantgate.hygiene rates (indicator -> flagged item -> rate); None in files older than it
    hygiene: dict[str, dict[str, float]] | None = None

    @property
    def summary(self) -> Summary:
        return Summary.of(self.items)

    @property
    def identity(self) -> dict[str, Any]:
        return {k: self.provenance.get(k) for k in IDENTITY_KEYS}

    @classmethod
    def from_run(
        cls, run: TaskRun, provenance: dict[str, Any], gate: dict[str, Any] | None = None
    ) -> Baseline:
        merged = {**run.provenance, **provenance, "truncated": run.truncated, "empty": run.empty}
        return cls(
            items=dict(run.scores),
            provenance=merged,
            gate=dict(gate or {}),
            hygiene={k: dict(v) for k, v in run.hygiene.items()},
        )

    def to_json(self) -> str:
        summary = self.summary
        payload = {
            "format": FORMAT,
            "summary": {"mean": summary.mean, "stderr": summary.stderr, "n": summary.n},
            "gate": self.gate,
            "provenance": self.provenance,
            "hygiene": self.hygiene,
            "items": dict(sorted(self.items.items(), key=lambda kv: _natural(kv[0]))),
        }
        return json.dumps(payload, indent=1, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "baseline") -> Baseline:
        try:
            data = json.loads(text)
            items = {str(k): float(v) for k, v in data["items"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BaselineError(
                f"{source}: not a quantgate baseline ({exc!r}); recreate it with --snapshot-update"
            ) from None
        hygiene = data.get("hygiene")
        if hygiene is not None and not (
            isinstance(hygiene, dict) and all(isinstance(v, dict) for v in hygiene.values())
        ):
            raise BaselineError(
                f"{source}: hygiene: expected a mapping of indicator -> item -> rate; "
                "recreate it with --snapshot-update"
            )
        return cls(
            items=items,
            provenance=data.get("provenance", {}),
            gate=data.get("gate", {}),
            hygiene=hygiene,
        )


def baseline_path(root: Path, suite: str, task: str, precision: str) -> Path:
    return Path(root) / suite / task / f"{precision}.json"


def load_baseline(path: Path) -> Baseline | None:
    """The baseline at ``path``, or None when there is none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise BaselineError(
            f"{path}: not a quantgate baseline (not UTF-8 text: {exc.reason} at byte "
            f"{exc.start}); recreate it with --snapshot-update"
        ) from None
    except OSError as exc:
        raise BaselineError(
            f"{path}: cannot be read ({exc.strerror or exc}); fix its permissions, or recreate "
            "it with --snapshot-update"
        ) from None
    return Baseline.from_json(text, source=str(path))


def identity(suite: Suite, task: str, precision: str) -> dict[str, Any]:
    """What a baseline of ``(task, precision)`` must share with a run to be comparable: the
    values of :data:`IDENTITY_KEYS` for the suite as it is now."""
    prec = suite.precisions[precision]
    return {
        "checkpoint": prec.checkpoint,
        "checkpoint_revision": tiny.revision(suite, precision),
        "quantization": prec.quantization,
        "task_config_hash": suite.task_config_hash(task),
        "generation": {
            "gen_kwargs": suite.gen_kwargs(task, suite.generation.seed),
            "system_instruction": suite.generation.system_instruction,
        },
    }


def stale_reasons(baseline: Baseline, identity: dict[str, Any]) -> list[str]:
    """What differs between a baseline's identity and the current suite's: empty when usable."""
    reasons = []
    for key in IDENTITY_KEYS:
        stored, current = baseline.provenance.get(key), identity.get(key)
        if _canonical(stored) != _canonical(current):
            reasons.append(f"{key}: baseline {_short(stored)}, suite {_short(current)}")
    return reasons


def host_provenance() -> dict[str, Any]:
    """Date and hardware, recorded with every baseline."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": {
            "machine": platform.machine(),
            "system": platform.system(),
            "cpu_count": os.cpu_count(),
            "gpus": _gpu_names(),
        },
        "python": platform.python_version(),
    }


def _gpu_names() -> list[str]:
    """GPU names from nvidia-smi (no torch import on the gate's path); [] without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 80) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _natural(key: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in key.replace("/", " / ").split())


def gate_against(
    reference: Baseline | None,
    run: TaskRun,
    gate,
    *,
    identity: dict[str, Any],
    where: str,
    refresh: str,
    subset_ok: bool = False,
):
    """The verdict of ``run`` against a stored ``reference`` baseline, under ``gate`` (a suite's
    GateConfig). A missing or stale reference raises :class:`BaselineError` with the command
    that refreshes it; a stale baseline is never silently used. ``subset_ok`` (smoke runs with
    --limit) pairs the run with the reference's scores of the same items."""
    from quantgate.gate import compare

    if reference is None:
        raise BaselineError(f"no baseline at {where}; create it with:\n    {refresh}")
    reasons = stale_reasons(reference, identity)
    if reasons:
        raise BaselineError(
            f"the baseline at {where} is stale ("
            + "; ".join(reasons)
            + f"); refresh it with:\n    {refresh}"
        )
    method = gate.method
    items = reference.items
    if subset_ok and set(run.scores) <= set(items):
        items = {k: items[k] for k in run.scores}
    reference_side = items if method != "unpaired" else reference.summary
    return compare(
        reference_side,
        run.scores,
        margin=gate.margin,
        alpha=gate.alpha,
        beta=gate.beta,
        method=method,
        threshold=gate.threshold,
        repeats=int(run.provenance.get("repeats") or 1),
        fail=gate.fail,
    )


def drift_verdict(stored: Baseline, new: Baseline):
    """The gate's verdict of ``new`` against the same precision's stored history, or None when
    the two are not comparable (other identity or other items)."""
    from quantgate.gate import compare

    if stale_reasons(stored, new.identity) or set(stored.items) != set(new.items):
        return None
    gate = {
        k: v
        for k, v in new.gate.items()
        if k in ("method", "margin", "alpha", "beta", "threshold", "fail")
    }
    if gate.get("method") == "unpaired":
        gate["method"] = "paired"  # both sides have items here
    return compare(stored.items, new.items, **gate, repeats=int(new.provenance.get("repeats") or 1))


def drifted(stored: Baseline, new: Baseline) -> bool:
    """True when ``new`` cannot stand for ``stored``: other identity or items, or a gated drop."""
    verdict = drift_verdict(stored, new)
    return verdict is None or verdict.outcome == "fail"
