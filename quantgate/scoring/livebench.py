"""LiveBench judgments: readers, upstream-bug fixes and both aggregations, as pure functions.

Usage::

    questions = read_questions("data/live_bench/instruction_following/paraphrase/question.jsonl")
    judgments = read_judgments(".../paraphrase/model_judgment/ground_truth_judgment.jsonl")
    summaries = summarize(judgments, questions)   # task/category re-joined from the questions
    summaries["bf16"].official                   # task mean -> category mean -> overall, in [0, 1]
    relative_table(summaries, reference="bf16")  # ratio to bf16 and gap in points

Scores stay fractions in [0, 1]; LiveBench multiplies by 100 only for display.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from quantgate.jsonl import read_jsonl, require_field

__all__ = [
    "JUDGMENT_FILE",
    "QUESTION_FILE",
    "GroupScore",
    "Judgment",
    "ModelSummary",
    "RelativeRow",
    "UnknownModelError",
    "dedupe_questions",
    "read_judgments",
    "read_questions",
    "relative_table",
    "summarize",
]

QUESTION_FILE = "question.jsonl"  # live_bench/<category>/<task>/question.jsonl
JUDGMENT_FILE = (
    "ground_truth_judgment.jsonl"  # .../<task>/model_judgment/ground_truth_judgment.jsonl
)
EVAL_ERROR = "eval_error"
SKIPPED_SCORE = -1
_TEXT = "a non-empty string"


class UnknownModelError(KeyError):
    """The requested model (e.g. the reference) has no summary; the message lists the models
    present.
    """

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Judgment:
    """One row of ``ground_truth_judgment.jsonl``; ``error`` holds ``error_msg`` (else
    ``error``).
    """

    question_id: str
    task: str
    model: str
    score: float
    category: str
    turn: int | None = None
    eval_status: str | None = None
    error: str | None = None
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    @property
    def is_eval_error(self) -> bool:
        """Upstream records a scorer exception as score 0 with ``eval_status == "eval_error"``."""
        return self.eval_status == EVAL_ERROR

    @property
    def is_skipped(self) -> bool:
        """``score == -1``: dropped by ``show_livebench_result.py``."""
        return self.score == SKIPPED_SCORE


@dataclass(frozen=True)
class GroupScore:
    """A task or category: ``mean`` over its ``n`` questions; ``official`` as LiveBench computes it
    (a task: its mean; a category: the unweighted mean of its task means)."""

    official: float
    mean: float
    n: int


@dataclass(frozen=True)
class ModelSummary:
    """One model. ``official``: task mean -> category mean -> overall; ``per_question_mean``:
    over its ``n`` rows.
    """

    model: str
    official: float | None
    per_question_mean: float | None
    n: int
    categories: Mapping[str, GroupScore]
    tasks: Mapping[str, GroupScore]
    n_skipped: int = 0
    n_duplicates: int = 0
    n_relabeled: int = 0
    unknown_question_ids: tuple[str, ...] = ()
    missing_question_ids: tuple[str, ...] = ()
    eval_errors: tuple[Judgment, ...] = ()


@dataclass(frozen=True)
class RelativeRow:
    """A model against the reference: ``*_relative`` is a ratio (reference = 1.0), ``*_gap_pp``
    in points.
    """

    model: str
    official: float | None
    official_relative: float | None
    official_gap_pp: float | None
    per_question_mean: float | None
    per_question_relative: float | None
    per_question_gap_pp: float | None


def read_questions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``read_questions("question.jsonl")``: the rows; ``question_id``, ``task``, ``category``
    must be strings.
    """
    rows = read_jsonl(path)
    for line, row in rows:
        for name in ("question_id", "task", "category"):
            require_field(path, line, row, name, _is_text, _TEXT)
    return [row for _, row in rows]


def read_judgments(path: str | os.PathLike[str]) -> list[Judgment]:
    """``read_judgments("ground_truth_judgment.jsonl")``: the rows as :class:`Judgment` (file
    and line kept).
    """
    return [_judgment_from_row(path, line, row) for line, row in read_jsonl(path)]


def _judgment_from_row(path: str | os.PathLike[str], line: int, row: dict[str, Any]) -> Judgment:
    texts = {
        name: require_field(path, line, row, name, _is_text, _TEXT)
        for name in ("question_id", "task", "model", "category")
    }
    score = require_field(
        path, line, row, "score", _is_score, "a number in [0, 1], or -1 for a skipped question"
    )
    error = row.get("error_msg") if row.get("error_msg") is not None else row.get("error")
    return Judgment(
        **texts,
        score=float(score),
        turn=require_field(
            path, line, row, "turn", _is_integer, "an integer or null", required=False
        ),
        eval_status=require_field(
            path, line, row, "eval_status", _is_string, "a string or null", required=False
        ),
        error=None if error is None else str(error),
        source=str(path),
        line=line,
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_score(value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and (value == SKIPPED_SCORE or 0 <= value <= 1)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def dedupe_questions(questions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unique questions, first occurrence kept, order kept; the same dict objects, never copied
    or changed.

    Replaces upstream's ``list(set([m.question for m in matches]))``, which raises
    ``TypeError: unhashable type: 'dict'``. Key: ``question_id``; without one (or ``None``),
    the canonical JSON of the whole question.

        >>> q = {"question_id": "9f1c", "task": "paraphrase"}
        >>> dedupe_questions([q, dict(q)])[0] is q
        True
    """
    seen: set[tuple[str, str]] = set()
    unique = []
    for question in questions:
        question_id = question.get("question_id")
        key = (
            ("json", _canonical(question))
            if question_id is None
            else ("id", _canonical(question_id))
        )
        if key not in seen:
            seen.add(key)
            unique.append(question)
    return unique


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def summarize(
    judgments: Iterable[Judgment], questions: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, ModelSummary]:
    """One :class:`ModelSummary` per model, in order of first appearance.

    Duplicates on ``(model, question_id, turn)``: the last row wins. ``score == -1`` rows are
    dropped and counted. With ``questions``, task/category come from the question (joined on
    ``question_id``); judgments of other questions are left out and counted; questions a model
    has no row for are listed as missing. ``eval_error`` rows stay in (score 0, as upstream)
    and are listed in ``eval_errors``.

    Usage:
    ``summarize(read_judgments(judgment_path), read_questions(question_path))["bf16"].official``
    """
    latest, duplicates = _keep_last(judgments)
    by_id = None
    if questions is not None:
        by_id = {
            q["question_id"]: q
            for q in dedupe_questions(questions)
            if q.get("question_id") is not None
        }
    by_model = _grouped(latest, "model", sort=False)
    return {
        model: _summarize_model(model, rows, duplicates[model], by_id)
        for model, rows in by_model.items()
    }


def _keep_last(judgments: Iterable[Judgment]) -> tuple[list[Judgment], Counter[str]]:
    latest: dict[tuple[str, str, int | None], Judgment] = {}
    duplicates: Counter[str] = Counter()
    for judgment in judgments:
        key = (judgment.model, judgment.question_id, judgment.turn)
        if key in latest:
            duplicates[judgment.model] += 1
        latest[key] = judgment  # a later row replaces the earlier one, in its first-seen position
    return list(latest.values()), duplicates


def _summarize_model(
    model: str,
    rows: list[Judgment],
    n_duplicates: int,
    by_id: Mapping[str, Mapping[str, Any]] | None,
) -> ModelSummary:
    unknown: list[str] = []
    relabeled = 0
    if by_id is not None:
        unknown = [j.question_id for j in rows if j.question_id not in by_id]
        known = [j for j in rows if j.question_id in by_id]
        rows = [_relabel(j, by_id[j.question_id]) for j in known]
        relabeled = sum(new != old for new, old in zip(rows, known))  # equality ignores source/line
    scored = [j for j in rows if not j.is_skipped]
    judged_ids = {j.question_id for j in rows}
    categories = {
        category: GroupScore(
            _mean([_mean_score(task_rows) for task_rows in _grouped(cat_rows, "task").values()]),
            _mean_score(cat_rows),
            len(cat_rows),
        )
        for category, cat_rows in _grouped(scored, "category").items()
    }
    return ModelSummary(
        model=model,
        official=_mean([c.official for c in categories.values()]) if categories else None,
        per_question_mean=_mean_score(scored) if scored else None,
        n=len(scored),
        categories=categories,
        tasks={
            task: GroupScore(_mean_score(task_rows), _mean_score(task_rows), len(task_rows))
            for task, task_rows in _grouped(scored, "task").items()
        },
        n_skipped=len(rows) - len(scored),
        n_duplicates=n_duplicates,
        n_relabeled=relabeled,
        unknown_question_ids=tuple(unknown),
        missing_question_ids=()
        if by_id is None
        else tuple(q for q in by_id if q not in judged_ids),
        eval_errors=tuple(j for j in rows if j.is_eval_error),
    )


def _relabel(judgment: Judgment, question: Mapping[str, Any]) -> Judgment:
    return replace(
        judgment,
        task=question.get("task") or judgment.task,
        category=question.get("category") or judgment.category,
    )


def _grouped(
    judgments: Iterable[Judgment], label: str, *, sort: bool = True
) -> dict[str, list[Judgment]]:
    groups: dict[str, list[Judgment]] = defaultdict(list)
    for judgment in judgments:
        groups[getattr(judgment, label)].append(judgment)
    return dict(sorted(groups.items())) if sort else dict(groups)


def _mean_score(judgments: Sequence[Judgment]) -> float:
    return _mean([j.score for j in judgments])


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def relative_table(
    summaries: Mapping[str, ModelSummary], reference: str = "bf16"
) -> list[RelativeRow]:
    """Each model against ``reference``: ratio (reference = 1.0) and gap in percentage points.

    Raises :class:`UnknownModelError` (a ``KeyError``) listing the models when ``reference`` is
    absent.
    """
    if reference not in summaries:
        present = ", ".join(repr(m) for m in summaries) or "none"
        raise UnknownModelError(
            f"reference model {reference!r} not found; models present: {present}"
        )
    ref = summaries[reference]
    return [
        RelativeRow(
            summary.model,
            summary.official,
            *_versus(summary.official, ref.official),
            summary.per_question_mean,
            *_versus(summary.per_question_mean, ref.per_question_mean),
        )
        for summary in summaries.values()
    ]


def _versus(value: float | None, reference: float | None) -> tuple[float | None, float | None]:
    """(value / reference, (value - reference) in percentage points); None where undefined."""
    if value is None or reference is None:
        return None, None
    return (value / reference if reference else None), (value - reference) * 100
