"""Run one lm-eval task against an OpenAI-compatible endpoint and return per-item scores.

    >>> result = run("arith", suite, "bf16", endpoint, out_dir=Path("out"),
    ...              cache_dir=Path("cache"))                              # doctest: +SKIP
    >>> result.scores["0"], result.mean                                     # doctest: +SKIP

lm-eval runs in-process (``simple_evaluate`` with ``local-chat-completions`` plus progress,
:func:`chat_model`; untokenized requests); its TaskManager is built once per tuple of task names
(:func:`task_manager`). Its sqlite request cache lives under
``cache_dir/<suite>/<precision>/<task>/<hash>`` (:func:`cache_key`: the task, the precision and
what answered), so a re-run against the same server re-scores and re-gates without generating
again, and another server never gets those answers. A finished run is kept there too
(``run-<key>/``: run.json and samples.jsonl, keyed by the limit, generation settings, data files'
bytes, lm-eval's version and our task and scoring code): the same run again returns it without
starting the server or lm-eval. Repeats are separate passes with their own seed and cache
(lm-eval's own ``repeats`` share one cache key), averaged per item. Local data files are checked
before ``endpoint`` is called (a callable starts no server for a broken case).

``items=`` (item ids: ``<doc_id>``, or ``<subtask>/<doc_id>`` for a group's members) runs those
docs through lm-eval's ``samples={task: [doc ids]}`` (:func:`item_selection`; a group's
subtasks without requested ids are left out), the request cache answering the docs generated
before. Doc ids are handed over sorted: lm-eval 0.4.13 maps the i-th selected doc, in dataset
order, to the i-th id of the list as given. A task drawing few-shot examples at random (any
sampler but ``first_n``) is refused with items=: its generator advances per evaluated doc, so
a subset's prompts would differ from the full run's the reference was scored on.

Truncation (quantgate.hygiene): lm-eval keeps only the answer text, so :func:`chat_model` logs
each answer's ``finish_reason`` and ``usage.completion_tokens`` to ``finish_r<repeat>.jsonl``
beside the request cache; a sample is truncated when the server stopped it at the token limit
(:func:`hit_token_limit`) or its think block is still open.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from quantgate.config import Suite
from quantgate.hygiene import stopped_at_limit
from quantgate.jsonl import atomic_write_text, read_jsonl_lenient
from quantgate.progress import track
from quantgate.runners import EndpointSource, answerer_of, generation_key, live_endpoint
from quantgate.runs import RunError, TaskRun, finish_run
from quantgate.scoring.answers import extract_final_integer, final_answer_text, is_truncated

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


def our_task_names() -> set[str]:
    """lm-eval task names defined by quantgate's own YAMLs."""
    names = set()
    for path in TASKS_DIR.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            if line.startswith("task:"):
                names.add(line.split(":", 1)[1].strip())
    return names


@functools.cache  # lru_cache(maxsize=None): one TaskManager per tuple of names
def task_manager(lmeval_tasks: tuple[str, ...]):
    """The TaskManager for these task names, built once per tuple: only our YAMLs when they
    suffice (indexing lm-eval's 14k shipped tasks takes ~10 s)."""
    from lm_eval.tasks import TaskManager

    shipped_needed = not set(lmeval_tasks) <= our_task_names()
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=shipped_needed)


def task_spec(suite: Suite, task_name: str) -> str | dict[str, Any]:
    """The lm-eval task spec: the task name; with local data files, a one-task group whose entry
    overrides the registered task's dataset (lm-eval merges such overrides into the YAML)."""
    task = suite.tasks[task_name]
    if not task.data_files:
        return task.lmeval_task
    files = {split: str(suite.resolve_path(p)) for split, p in task.data_files.items()}
    missing = [f for f in files.values() if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(f"{suite.path}: tasks.{task_name}.data_files: {missing} not found")
    override = {
        "task": task.lmeval_task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
    }
    return {"group": f"quantgate_{suite.name}_{task_name}", "task": [override]}


def cache_key(
    suite: Suite, task_name: str, precision: str, answerer: dict[str, Any] | None = None
) -> str:
    """Hash of everything that determines the generations (not the gate): the task config, the
    suite's precision entry and what answered (:meth:`~quantgate.runs.Endpoint.answerer`)."""
    return generation_key(suite, precision, answerer, task_config=suite.task_config_hash(task_name))


def run(
    task_name: str,
    suite: Suite,
    precision: str,
    endpoint: EndpointSource,
    *,
    out_dir: Path,
    cache_dir: Path,
    limit: int | None = None,
    items: list[str] | None = None,
) -> TaskRun:
    """Evaluate ``suite.tasks[task_name]`` on ``endpoint`` and score each item (``items``: only
    these item ids, see the module docstring)."""
    import lm_eval

    task = suite.tasks[task_name]
    spec = task_spec(suite, task_name)  # missing data files: before any server starts
    manager = task_manager((task.lmeval_task,))
    if items is not None and limit is not None:
        raise ValueError("items and limit exclude each other")
    tasks, selection = item_selection(suite, task_name, spec, items)
    limit = None if items is not None else limit if limit is not None else task.limit
    answerer = answerer_of(endpoint)
    key = cache_key(suite, task_name, precision, answerer)
    cache = cache_dir / suite.name / precision / task_name / key
    cache.mkdir(parents=True, exist_ok=True)
    memo = cache / f"run-{_memo_key(suite, task_name, limit, items)}"
    known = _from_memo(memo, out_dir)
    if known is not None:
        return known  # every answer known: no server, no lm-eval pass
    endpoint = live_endpoint(endpoint)
    per_item: dict[str, list[float]] = {}
    samples: list[dict[str, Any]] = []
    base_seed = suite.generation.seed
    for repeat in range(task.repeats):
        seed = None if base_seed is None else base_seed + repeat
        finish_log = cache / f"{FINISH_LOG}_r{repeat}.jsonl"
        result = _evaluate(
            lm_eval.simple_evaluate,
            selection,
            model=chat_model(),
            model_args={
                "progress_label": f"{suite.name}-{task_name}-{precision}",
                "model": endpoint.model,
                "base_url": endpoint.chat_completions_url,
                "num_concurrent": task.num_concurrent,
                "timeout": task.timeout,
                "tokenized_requests": False,
                "max_retries": 3,
                "finish_log": str(finish_log),
            },
            tasks=tasks,
            apply_chat_template=True,
            system_instruction=suite.generation.system_instruction,
            gen_kwargs=suite.gen_kwargs(task_name, seed),
            limit=limit,
            samples=selection,
            log_samples=True,
            use_cache=str(cache / f"requests_r{repeat}"),
            bootstrap_iters=0,
            task_manager=manager,
            verbosity="WARNING",
        )
        if selection is not None:
            _check_fewshot(result, selection, suite, task_name)
        finish = read_finish_log(finish_log)
        for subtask, record in _task_samples(result, task.lmeval_task):
            _collect(subtask, record, task.metric, repeat, per_item, samples, finish)
    if not per_item:
        raise RunError(
            f"lm-eval returned no samples with metric {task.metric!r} for task "
            f"{task.lmeval_task!r}; check the suite's metric key"
        )
    run = finish_run(
        task_name,
        precision,
        per_item,
        samples,
        out_dir=out_dir,
        provenance={
            "lm_eval_version": _version("lm_eval"),
            "lmeval_task": task.lmeval_task,
            "metric": task.metric,
            "limit": limit,
            **({"selected_items": len(items)} if items is not None else {}),
            "repeats": task.repeats,
            "gen_kwargs": suite.gen_kwargs(task_name, base_seed),
            "system_instruction": suite.generation.system_instruction,
            "task_config_hash": suite.task_config_hash(task_name),
            **endpoint.provenance(),
        },
    )
    _to_memo(run, memo)
    return run


def _memo_key(
    suite: Suite, task_name: str, limit: int | None, items: list[str] | None = None
) -> str:
    """What else decides a finished run besides the cache folder's key: the limit (or the items
    asked for), generation settings, the data files' bytes, lm-eval's version and our task and
    scoring code."""
    task = suite.tasks[task_name]
    digest = hashlib.sha256()
    payload = {
        "limit": limit,
        "gen_kwargs": suite.gen_kwargs(task_name, suite.generation.seed),
        "system_instruction": suite.generation.system_instruction,
        "lm_eval": _version("lm_eval"),
    }
    if items is not None:
        payload["items"] = hashlib.sha256("\n".join(items).encode()).hexdigest()
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    for name in sorted(task.data_files.values()):
        digest.update(suite.resolve_path(name).read_bytes())
    digest.update(_our_code_digest().encode())
    return digest.hexdigest()[:16]


@functools.cache
def _our_code_digest() -> str:
    """Hash of our lm-eval tasks, the answer scoring and this runner: read once per process,
    when the first run needs it (not at import)."""
    here = Path(__file__).resolve().parents[1]
    sources = [*(here / "tasks").rglob("*.py"), *(here / "tasks").rglob("*.yaml")]
    sources += [here / "scoring" / "answers.py", Path(__file__).resolve()]
    digest = hashlib.sha256()
    for source in sorted(sources):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _to_memo(run: TaskRun, memo: Path) -> None:
    """Keep a finished run beside its request cache (atomically: run.json last)."""
    import shutil

    memo.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.samples_path, memo / "samples.jsonl")
    atomic_write_text(memo / "run.json", run.to_json())


def _from_memo(memo: Path, out_dir: Path) -> TaskRun | None:
    """The memo's finished run, its samples copied to ``out_dir``; None where there is none or
    it is not a stored run (a cache: the run is made again, from the request cache)."""
    import shutil

    if not (memo / "samples.jsonl").exists() or not (memo / "run.json").exists():
        return None
    try:
        run = TaskRun.load(memo / "run.json", samples_path=out_dir / "samples.jsonl")
    except ValueError:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(memo / "samples.jsonl", out_dir / "samples.jsonl")
    return run


FINISH_LOG = "finish"  # <cache>/finish_r<repeat>.jsonl: each answer's finish_reason and tokens
_CONTEXTS: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "quantgate_lmeval_contexts", default=None
)  # the request an async lm-eval call is parsing (its parse_generations gets no contexts)


@functools.cache
def chat_model() -> str:
    """lm-eval's ``local-chat-completions`` that also reports progress (:mod:`quantgate.progress`:
    answers done / total, completion tokens/s) and keeps what lm-eval drops: each answer's
    ``finish_reason`` and ``usage.completion_tokens``, appended to ``finish_log`` keyed by the
    prompt's hash (lm-eval's ``prompt_hash`` of the sample; :func:`read_finish_log`), so a
    truncation by the token limit is known even when lm-eval's request cache answers later runs.
    Registered once as ``quantgate-chat-completions``, otherwise unchanged."""
    from lm_eval.api.registry import register_model
    from lm_eval.models.openai_completions import LocalChatCompletion

    name = "quantgate-chat-completions"

    @register_model(name)
    class ChatWithProgress(LocalChatCompletion):
        def __init__(
            self, progress_label: str = "lm-eval", finish_log: str | None = None, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.progress_label, self._progress = progress_label, None
            self.finish_log = Path(finish_log) if finish_log else None

        def generate_until(self, requests, disable_tqdm: bool = False):
            with track(self.progress_label, len(requests)) as self._progress:
                return super().generate_until(requests, disable_tqdm=True)

        async def amodel_call(self, *args, **kwargs):
            parent = super().amodel_call  # messages by keyword (0.4.13) or by position
            arguments = inspect.signature(parent).bind_partial(*args, **kwargs).arguments
            token = _CONTEXTS.set(list(arguments.get("messages") or []))
            try:
                return await parent(*args, **kwargs)
            finally:
                _CONTEXTS.reset(token)

        def parse_generations(self, outputs, **kwargs):
            answers = super().parse_generations(outputs, **kwargs)
            outs = outputs if isinstance(outputs, list) else [outputs]
            if self._progress is not None:
                for out in outs:
                    out = out if isinstance(out, dict) else {}
                    usage = out.get("usage") or {}
                    self._progress.update(
                        max(1, len(out.get("choices") or [])),
                        tokens=usage.get("completion_tokens"),
                    )
            contexts = kwargs.get("contexts") or _CONTEXTS.get()
            if self.finish_log is not None and contexts and len(contexts) == len(outs):
                _log_finish(self.finish_log, contexts, outs)
            return answers

    return name


def _prompt_hash(context: Any) -> str:
    """lm-eval's ``prompt_hash`` of a request's context (``hash_string(arguments[0])``: the
    sha256 of a chat request's JSON messages)."""
    from lm_eval.utils import hash_string

    return hash_string(str(getattr(context, "prompt", context)))


def _log_finish(path: Path, contexts: list, outputs: list) -> None:
    """One line per answer: its prompt's hash, the server's finish_reason and completion
    tokens (one choice per chat request)."""
    lines = []
    for context, out in zip(contexts, outputs):
        out = out if isinstance(out, dict) else {}
        choices = out.get("choices") or [{}]
        usage = out.get("usage") or {}
        lines.append(
            json.dumps(
                {
                    "prompt_hash": _prompt_hash(context),
                    "finish_reason": (choices[0] or {}).get("finish_reason"),
                    "completion_tokens": usage.get("completion_tokens"),
                }
            )
        )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def read_finish_log(path: Path) -> dict[str, dict[str, Any]]:
    """prompt hash -> ``{"finish_reason", "completion_tokens"}`` of the answers logged at
    ``path`` (the last line of a prompt wins; a torn last line is skipped). Answers lm-eval's
    request cache held before the log existed are absent: for them only an unclosed think
    block marks a truncation."""
    return read_jsonl_lenient(path, "prompt_hash")


def hit_token_limit(info: dict[str, Any] | None, gen_kwargs: Any) -> bool | None:
    """Whether the server stopped the answer at the token limit
    (:func:`quantgate.hygiene.stopped_at_limit`): its ``finish_reason``, else its
    ``completion_tokens`` (the server's own count, with the served model's tokenizer: lm-eval's
    untokenized chat requests have none) against the request's ``max_tokens`` /
    ``max_gen_toks``. None when neither is known."""
    if not info:
        return None
    kwargs = gen_kwargs if isinstance(gen_kwargs, dict) else {}
    limit = kwargs.get("max_tokens", kwargs.get("max_gen_toks"))
    return stopped_at_limit(info.get("finish_reason"), info.get("completion_tokens"), limit)


class _DocIds(list):
    """Sorted doc ids with a set's membership test: lm-eval checks ``i in samples`` for every
    doc of the task (a plain list makes that quadratic: 12k MMLU-Pro docs)."""

    def __init__(self, ids) -> None:
        super().__init__(sorted(set(ids)))
        self._members = frozenset(self)

    def __contains__(self, value) -> bool:
        return value in self._members


def item_selection(
    suite: Suite, task_name: str, spec: str | dict[str, Any], items: list[str] | None
) -> tuple[list, dict[str, list[int]] | None]:
    """lm-eval's ``tasks`` and ``samples`` for ``items``: plain doc ids select docs of the task
    itself (``{lmeval_task: ids}``); ``<subtask>/<doc_id>`` ids select docs of a group's members,
    which then run as tasks of their own (lm-eval runs every doc of a task the samples leave
    out). Without items: ``([spec], None)``."""
    if items is None:
        return [spec], None
    task = suite.tasks[task_name]
    plain: list[int] = []
    grouped: dict[str, list[int]] = {}
    for item in items:
        subtask, _, doc = str(item).rpartition("/")
        if not doc.isdigit():
            raise RunError(
                f"{suite.path}: tasks.{task_name}: item {item!r} is not an lm-eval item id "
                "(<doc_id>, or <subtask>/<doc_id> in a group)"
            )
        (grouped.setdefault(subtask, []) if subtask else plain).append(int(doc))
    if plain and grouped:
        raise RunError(
            f"{suite.path}: tasks.{task_name}: items mix plain doc ids and <subtask>/<doc_id>"
        )
    if plain:
        return [spec], {task.lmeval_task: _DocIds(plain)}
    if task.data_files:
        raise RunError(
            f"{suite.path}: tasks.{task_name}: <subtask>/<doc_id> items with data_files: the "
            "data override applies to the task as a whole, not to its members"
        )
    return sorted(grouped), {name: _DocIds(ids) for name, ids in grouped.items()}


def _evaluate(simple_evaluate, selection: dict | None, **kwargs):
    """``simple_evaluate(**kwargs)``; a doc id past the task's end (lm-eval asserts) as a
    RunError."""
    try:
        return simple_evaluate(**kwargs)
    except AssertionError as exc:
        if selection is None or "--samples" not in str(exc):
            raise
        raise RunError(f"lm-eval refused the items asked for: {exc}") from None


def _check_fewshot(result: dict[str, Any], selection: dict, suite: Suite, task_name: str) -> None:
    """Refuse a subset run of a task whose few-shot examples are drawn at random per doc."""
    configs = result.get("configs") or {}
    for name in selection:
        config = configs.get(name) or {}
        shots = config.get("num_fewshot") or 0
        sampler = (config.get("fewshot_config") or {}).get("sampler") or "default"
        if shots and sampler != "first_n":
            raise RunError(
                f"{suite.path}: tasks.{task_name}: {name} draws its {shots} few-shot examples "
                f"with the {sampler!r} sampler, whose generator advances per evaluated doc: a "
                "run of selected items (sequential looks) would see other examples than the "
                "full run; set the task's fewshot_config.sampler to first_n, or "
                "sequential: {looks: 1}"
            )


def _task_samples(result: dict[str, Any], lmeval_task: str) -> list[tuple[str | None, dict]]:
    """(subtask, record) pairs; subtask is None for a plain task, set for a group's members."""
    samples = result.get("samples", {})
    if lmeval_task in samples:
        return [(None, record) for record in samples[lmeval_task]]
    return [(name, record) for name, records in samples.items() for record in records]


def _collect(
    subtask: str | None,
    record: dict[str, Any],
    metric_key: str,
    repeat: int,
    per_item: dict[str, list[float]],
    samples: list[dict[str, Any]],
    finish: dict[str, dict[str, Any]] | None = None,
) -> None:
    """One lm-eval sample record as our sample (hygiene flags included). ``finish``: the
    answers' finish_reason / completion tokens by prompt hash (:func:`read_finish_log`): an
    answer stopped by the token limit is truncated even with no think block open."""
    metric, filter_name = metric_key.split(",")
    if record.get("filter") != filter_name or metric not in record:
        return
    item = str(record["doc_id"]) if subtask is None else f"{subtask}/{record['doc_id']}"
    score = float(record[metric])
    response = record["resps"][0][0] if record.get("resps") else ""
    info = (finish or {}).get(record.get("prompt_hash"))
    limited = hit_token_limit(info, _request_gen_kwargs(record))
    per_item.setdefault(item, []).append(score)
    samples.append(
        {
            "item": item,
            "repeat": repeat,
            "target": record.get("target"),
            "response": response,
            "filtered": record.get("filtered_resps"),
            "score": score,
            "finish_reason": (info or {}).get("finish_reason"),
            "completion_tokens": (info or {}).get("completion_tokens"),
            "truncated": bool(limited) or is_truncated(response),
            "empty": not final_answer_text(response).strip(),
            "no_answer": _no_answer(record.get("filtered_resps"))
            or (metric == "integer_match" and extract_final_integer(response) is None),
        }
    )


def _request_gen_kwargs(record: dict[str, Any]) -> dict[str, Any] | None:
    """The generation settings lm-eval sent for a sample (``arguments[0][1]``)."""
    try:
        kwargs = record["arguments"][0][1]
    except (KeyError, IndexError, TypeError):
        return None
    return kwargs if isinstance(kwargs, dict) else None


def _no_answer(filtered: Any) -> bool:
    """lm-eval's filter found nothing to grade: no value, an empty one, or its ``[invalid]``
    (our ``integer_match`` extracts itself: no final integer is no answer either)."""
    values = filtered if isinstance(filtered, list) else [filtered]
    return all(v is None or str(v).strip() in ("", "[invalid]") for v in values)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
