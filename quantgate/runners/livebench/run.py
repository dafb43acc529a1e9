"""LiveBench through a precision's server: questions, answers, judgments, per-question scores.

    >>> result = run("livebench", suite, "fp8", endpoint,
    ...              out_dir=Path("out"), cache_dir=Path("cache"))            # doctest: +SKIP
    >>> result.scores["<question_id>"]                                       # doctest: +SKIP
    >>> result.provenance["livebench"]["official"]                           # doctest: +SKIP

``run`` is the runner (:mod:`quantgate.runners.registry`); ``run_livebench`` is the same with a
``scorer`` to use instead of the task's.

1. questions of the task's ``release`` (a question is kept when its release date is on or before
   it and it was not removed on or before it), from ``questions_dir`` (a folder laid out like
   LiveBench's ``data/``: ``live_bench/<category>/<task>/question.jsonl``) or else the hub
   datasets ``livebench/<category>``, narrowed by ``categories`` / ``tasks`` / ``limit``;
2. preflight of the scorers (:mod:`.preflight`), before generating;
3. answers through :class:`~quantgate.serving.client.ChatClient` (temperature 0 or the question's
   ``required_temperature``, the suite's generation settings; :mod:`.answers`), written in
   LiveBench's format to
   ``<tree>/data/live_bench/<category>/<task>/model_answer/<model>.jsonl``; the tree is the cache
   of one (suite, precision, release, generation settings): answers present are never generated
   again, so a re-run only judges (and needs no server);
4. judgment by our loop (:mod:`.judge`) into
   ``.../model_judgment/ground_truth_judgment.jsonl`` beside copies of the questions, so
   ``cd <tree> && python -m livebench.show_livebench_result --question-source jsonl
   --livebench-release-option <release>`` reads it as it is;
5. per-question scores as the items; the provenance carries the per-question mean, the official
   number (task -> category -> overall) and per-category means with N. ``eval_error`` judgments
   raise :class:`LiveBenchEvalError` with their messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantgate.config import Suite
from quantgate.hygiene import item_rates, stopped_at_limit
from quantgate.jsonl import atomic_write_text, read_jsonl, write_jsonl
from quantgate.runners import EndpointSource, answerer_of, live_endpoint
from quantgate.runners.livebench.answers import (
    generate,
    model_name,
    read_answers,
    task_dir,
    tree_dir,
    write_answers,
)
from quantgate.runners.livebench.judge import (
    LiveBenchScorer,
    Scorer,
    answer_text,
    eval_errors,
    judge,
    load_scorer,
    write_judgments,
)
from quantgate.runners.livebench.preflight import preflight, require_livebench
from quantgate.runs import RunError, TaskRun, answerer_provenance
from quantgate.scoring.answers import final_answer_text, is_truncated
from quantgate.scoring.livebench import read_judgments, summarize

CATEGORIES = ("coding", "data_analysis", "instruction_following", "math", "reasoning", "language")
HUB_ORGANIZATION = "livebench"
QUESTION_FILE = "question.jsonl"


class LiveBenchError(RunError):
    """The LiveBench case cannot be scored as configured (questions, scorer): it fails."""


class LiveBenchEvalError(LiveBenchError):
    """Judgments with ``eval_status: eval_error``: the scorer failed on these questions."""


# --- questions ---------------------------------------------------------------------------------


def load_questions(
    release: str,
    *,
    questions_dir: Path | None = None,
    categories: Iterable[str] = (),
    tasks: Iterable[str] = (),
) -> list[dict]:
    """The questions of ``release``, filtered by category and task, in a stable order."""
    categories, tasks = list(categories), list(tasks)
    rows = (
        _local_questions(questions_dir, categories)
        if questions_dir is not None
        else _hub_questions(categories)
    )
    rows = [
        q
        for q in rows
        if (not categories or q["category"] in categories) and (not tasks or q["task"] in tasks)
    ]
    ids = [q["question_id"] for q in rows]
    if len(ids) != len(set(ids)):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise LiveBenchError(f"duplicate question_id in the questions: {duplicated[:5]}")
    return in_release(rows, release)


def in_release(questions: Iterable[dict], release: str) -> list[dict]:
    """Released on or before ``release`` and not removed on or before it (LiveBench's filter)."""
    return [
        q
        for q in questions
        if str(q["livebench_release_date"]) <= release
        and (not q.get("livebench_removal_date") or str(q["livebench_removal_date"]) > release)
    ]


def _local_questions(folder: Path, categories: list[str]) -> list[dict]:
    folder = Path(folder)
    root = folder / "live_bench" if (folder / "live_bench").is_dir() else folder
    files = sorted(root.glob(f"*/*/{QUESTION_FILE}"))
    if not files:
        raise LiveBenchError(f"no <category>/<task>/{QUESTION_FILE} under {root}")
    return [
        row
        for path in files
        if not categories or path.parent.parent.name in categories
        for _, row in read_jsonl(path)
    ]


def _hub_questions(categories: list[str]) -> list[dict]:
    """LiveBench's published datasets (``livebench/<category>``, split ``test``; needs the
    network or a filled Hub cache), dates as text the way upstream's ``load_questions`` writes
    them."""
    from datasets import load_dataset

    rows = []
    for category in categories or CATEGORIES:
        for row in load_dataset(f"{HUB_ORGANIZATION}/{category}", split="test"):
            rows.append(
                {
                    k: v.strftime("%Y-%m-%d") if hasattr(v, "strftime") else _plain(v)
                    for k, v in dict(row).items()
                }
            )
    return rows


def _plain(value: Any) -> Any:
    """Nested dates (``original_json.contest_date``) as upstream writes them."""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- the run --------------------------------------------------------------------------------------


def select_questions(
    suite: Suite, task_name: str, limit: int | None = None, items: list[str] | None = None
) -> list[dict]:
    """The questions a suite task runs (``limit``: the first N; default the task's own limit;
    ``items``: exactly these question ids of the release and filters, in that order)."""
    task = suite.tasks[task_name]
    folder = suite.resolve_path(task.questions_dir) if task.questions_dir else None
    questions = load_questions(
        task.release, questions_dir=folder, categories=task.categories, tasks=task.tasks
    )
    if items is not None:
        by_id = {str(q["question_id"]): q for q in questions}
        unknown = [i for i in items if str(i) not in by_id]
        if unknown:
            raise LiveBenchError(
                f"{suite.path}: tasks.{task_name}: {len(unknown)} question ids not in release "
                f"{task.release} for these filters: {', '.join(map(str, unknown[:5]))}"
            )
        return [by_id[str(i)] for i in items]
    limit = limit if limit is not None else task.limit
    questions = questions[:limit] if limit else questions
    if not questions:
        raise LiveBenchError(
            f"{suite.path}: tasks.{task_name}: no questions in release "
            f"{task.release} for categories {task.categories or 'all'} and tasks "
            f"{task.tasks or 'all'}"
        )
    return questions


def resolve_scorer(
    suite: Suite, task_name: str, questions: list[dict], scorer: Scorer | None = None
) -> tuple[Scorer, str]:
    """The scorer and its name; LiveBench's own (after the preflight) unless one is given or the
    task names ``scorer: module:function``."""
    spec = suite.tasks[task_name].scorer
    if scorer is not None:
        return scorer, getattr(scorer, "name", None) or getattr(scorer, "__qualname__", "custom")
    if spec:
        try:
            return load_scorer(spec), spec
        except ValueError as exc:
            raise LiveBenchError(f"{suite.path}: tasks.{task_name}.scorer: {exc}") from None
    require_livebench()
    preflight(questions)
    return LiveBenchScorer(), "livebench"


def run_livebench(
    task_name: str,
    suite: Suite,
    precision: str,
    endpoint: EndpointSource,
    *,
    out_dir: Path,
    cache_dir: Path,
    limit: int | None = None,
    scorer: Scorer | None = None,
    items: list[str] | None = None,
) -> TaskRun:
    """Generate what is missing, judge everything, return per-question scores. The answers are
    kept per answerer (:func:`~quantgate.runners.answerer_of`); a
    :class:`~quantgate.runs.PendingEndpoint` is started only when answers have to be
    generated. ``items``: only these question ids (answers already in the tree are reused, so a
    longer list later generates only the new ones)."""
    questions = select_questions(suite, task_name, limit, items)
    scorer, scorer_name = resolve_scorer(suite, task_name, questions, scorer)
    tree = tree_dir(cache_dir, suite, task_name, precision, answerer_of(endpoint))
    data, model = tree / "data" / "live_bench", model_name(suite, precision)
    for folder, rows in _by_task(data, questions).items():
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / QUESTION_FILE, rows)
    answers = read_answers(data, model, questions)
    todo = [q for q in questions if q["question_id"] not in answers]
    if todo:
        try:
            live = live_endpoint(endpoint)
        except RunError as exc:  # e.g. --from-cache, or a server that does not start
            raise type(exc)(
                f"{exc} ({len(todo)} of {len(questions)} answers are not in the cache)"
            ) from None
        answers.update(generate(todo, suite, task_name, precision, live, tree))
        write_answers(data, model, questions, answers)
    rows = judge(questions, answers, scorer, model=model)
    paths = write_judgments(rows, data)
    summary = summarize(
        [j for p in paths for j in read_judgments(p) if j.model == model], questions
    )[model]
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = [
        {
            "item": r["question_id"],
            "category": r["category"],
            "task": r["task"],
            "response": answers[r["question_id"]]["choices"][0]["turns"][-1],
            "judged": answer_text(answers[r["question_id"]]),
            "score": r["score"],
            "eval_status": r.get("eval_status"),
            "error": r.get("error_msg"),
        }
        for r in rows
    ]
    for sample in samples:  # the hygiene flags (quantgate.hygiene)
        row = answers[sample["item"]]
        sample["finish_reason"] = row.get("finish_reason")
        sample["truncated"] = stopped_by_limit(row) or is_truncated(sample["response"])
        sample["empty"] = not final_answer_text(sample["response"]).strip()
        sample["no_answer"] = not sample["judged"].strip()
    samples_path = out_dir / "samples.jsonl"
    write_jsonl(samples_path, samples)
    stats = _statistics(summary, model)
    atomic_write_text(
        out_dir / "livebench.json",
        json.dumps({**stats, "tree": str(tree), "generated": len(todo)}, indent=1) + "\n",
    )
    errors = eval_errors(rows)
    if errors:
        listed = "\n".join(
            f"  {r['category']}/{r['task']} {r['question_id']}: {r['error_msg']}"
            for r in errors[:20]
        )
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise LiveBenchEvalError(
            f"{len(errors)} of {len(rows)} LiveBench judgments are "
            f"eval_error (scored 0 by upstream, never by this gate):\n"
            f"{listed}{more}\njudgments: {data}"
        )
    task = suite.tasks[task_name]
    return TaskRun(
        task=task_name,
        precision=precision,
        scores={r["question_id"]: float(r["score"]) for r in rows},
        truncated=sum(s["truncated"] for s in samples),
        empty=sum(s["empty"] for s in samples),
        hygiene=item_rates(samples),
        samples_path=samples_path,
        provenance={
            "runner": "livebench",
            "release": task.release,
            "questions": "hub" if not task.questions_dir else task.questions_dir,
            "categories": list(task.categories),
            "tasks": list(task.tasks),
            "limit": None if items is not None else limit if limit is not None else task.limit,
            **({"selected_items": len(items)} if items is not None else {}),
            "scorer": scorer_name,
            **_livebench_version(scorer_name),
            "task_config_hash": suite.task_config_hash(task_name),
            **_engine(endpoint),
            "livebench": stats,
        },
    )


def stopped_by_limit(row: dict) -> bool:
    """An answer row the server stopped at the token limit
    (:func:`quantgate.hygiene.stopped_at_limit`): its ``finish_reason``, or for a row without
    one (written elsewhere, e.g. by LiveBench itself) its ``total_output_tokens`` against the
    ``max_tokens`` it was asked with."""
    limit = ((row.get("api_info") or {}).get("api_kwargs") or {}).get("max_tokens")
    return bool(stopped_at_limit(row.get("finish_reason"), row.get("total_output_tokens"), limit))


def _by_task(data: Path, questions: list[dict]) -> dict[Path, list[dict]]:
    groups: dict[Path, list[dict]] = {}
    for q in questions:
        groups.setdefault(task_dir(data, q), []).append(q)
    return groups


def _statistics(summary, model: str) -> dict[str, Any]:
    """What the baseline and the report show: per-question mean, official, per category/task."""
    return {
        "model": model,
        "n": summary.n,
        "per_question_mean": summary.per_question_mean,
        "official": summary.official,
        "categories": {
            c: {"official": g.official, "mean": g.mean, "n": g.n}
            for c, g in summary.categories.items()
        },
        "tasks": {t: {"mean": g.mean, "n": g.n} for t, g in summary.tasks.items()},
    }


def _engine(endpoint) -> dict[str, Any]:
    """The server's provenance, from what answers (no server is started to learn it)."""
    return answerer_provenance(answerer_of(endpoint))


def _livebench_version(scorer_name: str) -> dict[str, Any]:
    if scorer_name != "livebench":
        return {}
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("livebench")
    except PackageNotFoundError:
        return {"livebench_version": None}
    url = json.loads(dist.read_text("direct_url.json") or "{}")
    return {
        "livebench_version": dist.version,
        "livebench_source": url.get("url"),
        "livebench_commit": (url.get("vcs_info") or {}).get("commit_id"),
    }


#: The runner (``run(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit,
#: items)``):
#: :func:`run_livebench` with the task's own scorer.
run = run_livebench
