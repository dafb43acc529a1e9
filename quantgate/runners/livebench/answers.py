"""LiveBench answers: the cache tree, the requests, ``model_answer/<model>.jsonl``.

    tree = tree_dir(cache_dir, suite, "livebench", "fp8", endpoint.answerer())
    data = tree / "data" / "live_bench"  # per suite, precision, release, generation, answerer
    answers = read_answers(data, model_name(suite, "fp8"), questions)

Rows are LiveBench's answer format (``question_id, answer_id, model_id, choices: [{index, turns}],
tstamp, total_output_tokens, api_info``), one file per task, sorted by question_id as upstream's
``reorg_answer_file`` leaves them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantgate import config
from quantgate.config import Suite
from quantgate.jsonl import read_jsonl, write_jsonl
from quantgate.runners import generation_key
from quantgate.runs import Endpoint, answerer_key
from quantgate.serving.client import ChatClient, ChatRequest


def request_params(suite: Suite, task_name: str, question: dict) -> dict[str, Any]:
    """What a question is sent with: LiveBench's temperature (0, or the question's
    ``required_temperature``) and the suite's generation settings (max_gen_toks -> max_tokens)."""
    temperature = question.get("required_temperature") or 0.0
    return config.request_params(
        suite.gen_kwargs(task_name, suite.generation.seed, temperature=temperature)
    )


def tree_dir(
    cache_dir: Path,
    suite: Suite,
    task_name: str,
    precision: str,
    answerer: dict[str, Any] | None = None,
) -> Path:
    """The LiveBench tree of one (suite, precision, release, generation settings, answerer:
    :meth:`~quantgate.runs.Endpoint.answerer`)."""
    key = generation_key(
        suite,
        precision,
        answerer,
        generation=suite.generation.model_dump(mode="json"),
        gen_kwargs=suite.tasks[task_name].gen_kwargs,
    )
    return Path(cache_dir) / suite.name / precision / suite.tasks[task_name].release / key


def model_name(suite: Suite, precision: str) -> str:
    return f"{suite.name}-{precision}".lower()  # LiveBench lower-cases model names


def task_dir(data: Path, question: dict) -> Path:
    return data / question["category"] / question["task"]


def read_answers(data: Path, model: str, questions: Iterable[dict]) -> dict[str, dict]:
    """The model's stored answers to these questions (question_id -> answer row)."""
    answers: dict[str, dict] = {}
    for folder in sorted({task_dir(data, q) for q in questions}):
        path = folder / "model_answer" / f"{model}.jsonl"
        if path.exists():
            answers.update({row["question_id"]: row for _, row in read_jsonl(path)})
    return answers


def write_answers(data: Path, model: str, questions: list[dict], answers: dict[str, dict]) -> None:
    """Per task, every answer of the model, sorted by question_id (as upstream's reorg)."""
    by_folder: dict[Path, list[dict]] = {}
    for q in questions:
        by_folder.setdefault(task_dir(data, q), []).append(answers[q["question_id"]])
    for folder, rows in by_folder.items():
        path = folder / "model_answer" / f"{model}.jsonl"
        old = {r["question_id"]: r for _, r in read_jsonl(path)} if path.exists() else {}
        old.update({r["question_id"]: r for r in rows})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, [old[k] for k in sorted(old)])


def answer_row(question: dict, model: str, reply, params: dict, endpoint: Endpoint) -> dict:
    """One line of ``model_answer/<model>.jsonl`` in LiveBench's format."""
    choice: dict[str, Any] = {"index": 0, "turns": [reply.content]}
    if reply.reasoning:
        choice["reasoning"] = [reply.reasoning]
    answer_id = hashlib.sha256(f"{model}/{question['question_id']}/{reply.content}".encode())
    return {
        "question_id": question["question_id"],
        "answer_id": answer_id.hexdigest()[:22],
        "model_id": model,
        "choices": [choice],
        "tstamp": time.time(),
        "total_output_tokens": reply.completion_tokens
        if reply.completion_tokens is not None
        else -1,
        "finish_reason": reply.finish_reason,
        "api_info": {
            "provider": "quantgate",
            "api_name": endpoint.model,
            "api_kwargs": params,
            **endpoint.provenance(),
            "checkpoint": endpoint.checkpoint,
        },
    }


def generate(
    questions: list[dict],
    suite: Suite,
    task_name: str,
    precision: str,
    endpoint: Endpoint,
    cache: Path,
) -> dict[str, dict]:
    task, model = suite.tasks[task_name], model_name(suite, precision)
    client = ChatClient(
        endpoint,
        cache_path=cache / "requests.sqlite",
        identity=answerer_key(endpoint.answerer()),
        concurrency=task.num_concurrent,
        timeout=task.timeout,
        deadline=2 * task.timeout,  # one slow answer and a retry, backoff included
    )
    system = suite.generation.system_instruction
    requests = [
        ChatRequest.user(
            q["turns"][0],
            system=q.get("system_prompt") or system,
            **request_params(suite, task_name, q),
        )
        for q in questions
    ]
    replies = client.complete(requests, desc=f"{suite.name}-{task_name}-{precision}")
    return {
        q["question_id"]: answer_row(q, model, reply, r.params, endpoint)
        for q, reply, r in zip(questions, replies, requests)
    }
