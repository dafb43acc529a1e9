"""LiveBench judgment: our own loop over LiveBench's own per-task scorers.

    rows = judge(questions, answers, LiveBenchScorer(), model="tiny-bf16")
    paths = write_judgments(rows, data_dir)  # <category>/<task>/model_judgment/<judgment file>

What the loop does that upstream's ``gen_ground_truth_judgment.py`` (commit b0fb577) does not:

- questions are de-duplicated with :func:`~quantgate.scoring.livebench.dedupe_questions`
  (upstream's ``list(set(...))`` over question dicts raises ``TypeError``);
- ``task`` and ``category`` of every row come from its question (upstream labels every
  instruction-following row with the first question's task);
- the text judged is the answer's last turn with think blocks removed, and an unterminated
  ``<think>`` leaves nothing: a cut-off reasoning trace is never credited;
- an exception while scoring becomes an ``eval_error`` row (score 0, ``error_msg``), as upstream
  records it since mid-2026, and the runner then fails the case with the messages.

A scorer is any ``f(question: dict, answer_text: str) -> float`` in [0, 1]; :class:`LiveBenchScorer`
routes each question to LiveBench's scorer the way ``play_a_match_gt`` does.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from quantgate.jsonl import read_jsonl, write_jsonl
from quantgate.scoring.answers import strip_think
from quantgate.scoring.livebench import EVAL_ERROR, dedupe_questions

Scorer = Callable[[dict, str], float]
JUDGMENT_FILE = "ground_truth_judgment.jsonl"
OLD_IF_BEFORE = "2025-11-25"  # instruction following released before this: IFEval, not IFBench
_P = "livebench.process_results."
# route -> (module, function, how it is called); mirrors play_a_match_gt at commit b0fb577
ROUTES: dict[str, tuple[str, str, str]] = {
    "mathcontest": (_P + "math.math_competitions.utils", "mathcontest_process_results", "gt_q"),
    "aime": (_P + "math.math_competitions.utils", "aime_process_results", "gt"),
    "proof_rearrangement": (
        _P + "math.olympiad.utils",
        "proof_rearrangement_process_results",
        "proof",
    ),
    "cta": (_P + "data_analysis.cta.utils", "cta_process_results", "gt"),
    "tablereformat": (_P + "data_analysis.tablereformat.utils", "table_process_results", "table"),
    "tablejoin": (_P + "data_analysis.tablejoin.utils", "joinmap_process_results", "q_gt"),
    "consecutive_events": (
        _P + "data_analysis.consecutive_events.utils",
        "consecutive_events_process_results",
        "gt",
    ),
    "amps_hard": (_P + "math.AMPS_Hard.utils", "amps_hard_process_results", "gt"),
    "integrals_with_game": (
        _P + "math.integrals_with_game.utils",
        "integrals_with_game_process_results",
        "gt",
    ),
    "web_of_lies_v2": (_P + "reasoning.web_of_lies_v2.utils", "web_of_lies_process_results", "gt"),
    "web_of_lies_v3": (
        _P + "reasoning.web_of_lies_v3.utils",
        "web_of_lies_v3_process_results",
        "gt",
    ),
    "house_traversal": (
        _P + "reasoning.house_traversal.utils",
        "house_traversal_process_results",
        "gt",
    ),
    "zebra_puzzle": (_P + "reasoning.zebra_puzzle.utils", "get_zebra_puzzle_evaluator", "dated"),
    "spatial": (_P + "reasoning.spatial.utils", "spatial_process_results", "gt"),
    "theory_of_mind": (
        _P + "reasoning.theory_of_mind.utils",
        "theory_of_mind_process_results",
        "gt",
    ),
    "logic_with_navigation": (
        _P + "reasoning.logic_with_navigation.utils",
        "logic_with_navigation_process_results",
        "gt",
    ),
    "sudoku": (_P + "reasoning.sudoku.utils", "sudoku_process_results", "gt"),
    "typos": (_P + "writing.typos.utils", "typos_process_results", "gt"),
    "connections": (_P + "writing.connections.utils", "get_connections_puzzle_evaluator", "dated"),
    "plot_unscrambling": (
        _P + "writing.plot_unscrambling.utils",
        "plot_unscrambling_process_results",
        "gt",
    ),
    "lcb_generation": (_P + "coding.utils", "LCB_generation_process_results", "question"),
    "code_generation": (_P + "coding.utils", "code_generation_process_results", "question"),
    "instruction_following": (
        "livebench.if_runner.instruction_following_eval.evaluation_main",
        "test_instruction_following_strict",
        "ifeval",
    ),
    "ifbench": (_P + "instruction_following.utils", "ifbench_process_results", "question"),
}
_GT_OPTIONAL = {"lcb_generation", "code_generation", "instruction_following", "ifbench"}


class UnsupportedTask(ValueError):
    """A LiveBench task quantgate's runner cannot judge (agentic coding needs Docker; unknown)."""


def route(question: Mapping[str, Any]) -> str:
    """The LiveBench scorer a question goes to (a key of :data:`ROUTES`), decided like
    ``play_a_match_gt``: by category for instruction following, else by subtask or task."""
    task = question["task"]
    name = question.get("subtask") or task
    if question.get("category") == "instruction_following":
        released = str(question.get("livebench_release_date") or "")
        return "instruction_following" if released < OLD_IF_BEFORE else "ifbench"
    splits = name.split("_")
    if splits[0] in ("amc", "smc") or (len(splits) > 1 and splits[1] == "amc"):
        return "mathcontest"
    if splits[0] == "aime":
        return "aime"
    if splits[0] in ("imo", "usamo"):
        return "proof_rearrangement"
    if "amps_hard" in name or "amps_hard" in task:
        return "amps_hard"
    if "zebra_puzzle" in name:
        return "zebra_puzzle"
    if name in ("LCB_generation", "coding_completion"):
        return "lcb_generation"
    if name in ("code_generation", "code_completion"):
        return "code_generation"
    if name in ROUTES and ROUTES[name][2] != "ifeval":
        return name
    hint = " (it needs Docker and litellm)" if name == "agentic_coding" else ""
    raise UnsupportedTask(f"no LiveBench scorer for task {task!r}{hint}")


class LiveBenchScorer:
    """``scorer(question, answer_text) -> score``: LiveBench's own scorer for the question's task,
    imported from the installed ``livebench`` package on first use.

    Coding (``lcb_generation``: LCB_generation and coding_completion) is graded the way
    LiveBench's ``LCB_generation_process_results`` grades it — last fenced block, the
    ``partial_solution`` prepended where the code does not start with it, public then private
    tests (decoded without unpickling), ``metadata.func_name`` for functional problems, 6 s per
    test, 1 only when every test passes — but every program runs in quantgate's sandbox
    (:mod:`quantgate.sandbox`, via :func:`quantgate.scoring.lcb.grading_plan`), never in
    upstream's ``codegen_metrics`` on the host. ``code_generation`` (later releases) is not
    sandboxed and therefore refused."""

    name = "livebench"

    def __init__(self) -> None:
        self._functions: dict[str, Any] = {}
        self._box = None

    def function(self, name: str):
        if name not in self._functions:
            module, attr, _ = ROUTES[name]
            self._functions[name] = getattr(importlib.import_module(module), attr)
        return self._functions[name]

    def __call__(self, question: dict, text: str) -> float:
        name = route(question)
        if name == "lcb_generation":
            return self._sandboxed_code(question, text)
        if name == "code_generation":
            raise UnsupportedTask(
                f"task {question['task']!r}: LiveBench's code_generation scorer would run the "
                "model's programs on the host; quantgate grades only LCB_generation and "
                "coding_completion (in its sandbox)"
            )
        kind = ROUTES[name][2]
        if "ground_truth" not in question and name not in _GT_OPTIONAL:
            raise ValueError("Questions must have ground_truth to run gen_ground_truth_judgment.")
        fn, gt, prompt = self.function(name), question.get("ground_truth"), question["turns"][0]
        if kind == "gt":
            return fn(gt, text, False)
        if kind == "gt_q":
            return fn(gt, text, prompt, False)
        if kind == "q_gt":
            return fn(prompt, gt, text, False)
        if kind == "proof":
            return fn(gt, text, edit_distance=True, debug=False)
        if kind == "table":
            version = "v2" if question["livebench_release_date"] >= "2025-04-25" else "v1"
            return fn(prompt, gt, text, version, False)
        if kind == "dated":
            return fn(question["livebench_release_date"])(gt, text, False)
        if kind == "question":
            return fn(question, text, False)
        return self._ifeval(question, text)

    def _sandboxed_code(self, question: dict, text: str) -> float:
        from datetime import datetime

        from quantgate.sandbox import Limits, Sandbox
        from quantgate.scoring.lcb import Problem, decode_private_tests, extract_code, grading_plan

        def loaded(value, default):
            value = default if value in (None, "") else value
            return json.loads(value) if isinstance(value, str) else value

        original = question.get("original_json") or {}
        metadata = loaded(original.get("metadata"), "{}")
        private = question.get("private_test_cases") or "[]"
        problem = Problem(
            question_id=str(question["question_id"]),
            question_title=str(question.get("question_title", "")),
            question_content=question["turns"][0],
            platform=str(original.get("platform", "")),
            contest_id=str(original.get("contest_id", "")),
            contest_date=datetime.min,
            starter_code=question.get("partial_solution") or "",
            difficulty=str(original.get("difficulty", "")),
            public_tests=tuple(loaded(question["public_test_cases"], "[]")),
            private_tests=tuple(
                decode_private_tests(private) if isinstance(private, str) else private
            ),
            fn_name=metadata.get("func_name"),
        )
        code = extract_code(text)
        partial = question.get("partial_solution") or ""
        if partial and not code.startswith(partial):
            code = partial + "\n" + code
        if not code.strip():
            return 0.0
        if self._box is None:
            self._box = Sandbox(limits=Limits(wall_seconds=9, cpu_seconds=7, memory_mb=2048))
        files, argv, tests = grading_plan(problem, code)
        return float(self._box.judge(files, argv, tests).passed)

    def _ifeval(self, question: dict, text: str) -> float:
        """Instruction following before 2025-11-25: LiveBench's IFEval strict check of one
        question, scored like its ``score_results``: (all followed + fraction followed) / 2."""
        module = importlib.import_module(ROUTES["instruction_following"][0])
        (example,) = module.read_prompt_list([copy.deepcopy(question)])
        result = self.function("instruction_following")(example, {example.prompt: text})
        followed = [bool(f) for f in result.follow_instruction_list]
        return (float(all(followed)) + sum(followed) / len(followed)) / 2


def load_scorer(spec: str) -> Scorer:
    """``"package.module:function"`` -> the function (a scorer named in a suite)."""
    module, _, attr = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"scorer {spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(function):
        raise ValueError(f"scorer {spec!r} is not callable")
    return function


def answer_text(answer: Mapping[str, Any]) -> str:
    """What is judged: the last turn of the first choice, think blocks removed."""
    return strip_think(str(answer["choices"][0]["turns"][-1]))


def judge(
    questions: Iterable[dict],
    answers: Mapping[str, Mapping[str, Any]],
    scorer: Scorer,
    *,
    model: str,
) -> list[dict[str, Any]]:
    """One judgment row per unique question, in question order. ``answers``: question_id ->
    answer row (LiveBench's model_answer format). A question without an answer raises KeyError."""
    rows = []
    for question in dedupe_questions(questions):
        qid = question["question_id"]
        answer = answers[qid]
        row: dict[str, Any] = {
            "question_id": qid,
            "task": question["task"],
            "model": model,
            "score": 0,
            "tstamp": time.time(),
            "category": question["category"],
        }
        try:
            row["score"] = _checked(scorer(question, answer_text(answer)))
        except Exception as exc:  # noqa: BLE001 - any scorer failure is recorded, as upstream
            row.update(eval_status=EVAL_ERROR, error_msg=f"{type(exc).__name__}: {exc}")
        if "answer_id" in answer:
            row["answer_id"] = answer["answer_id"]
        if question.get("subtask"):
            row["subtask"] = question["subtask"]
        rows.append(row)
    return rows


def _checked(score: Any) -> float:
    if isinstance(score, bool):
        return float(score)
    if not isinstance(score, (int, float)) or not math.isfinite(score) or not 0 <= score <= 1:
        raise ValueError(f"the scorer returned {score!r}; expected a number in [0, 1]")
    return score


def eval_errors(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("eval_status") == EVAL_ERROR]


def write_judgments(rows: Iterable[Mapping[str, Any]], data_dir: Path) -> list[Path]:
    """``<data_dir>/<category>/<task>/model_judgment/ground_truth_judgment.jsonl`` per task, rows
    sorted by (question_id, model) as upstream's ``reorg_output_file`` leaves them. Rows of other
    models already in a file are kept; this model's rows are replaced."""
    by_file: dict[Path, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        path = Path(data_dir) / row["category"] / row["task"] / "model_judgment" / JUDGMENT_FILE
        by_file[path].append(row)
    for path, new in by_file.items():
        models = {row["model"] for row in new}
        kept = (
            [r for _, r in read_jsonl(path) if r.get("model") not in models]
            if path.exists()
            else []
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, sorted(kept + new, key=lambda r: (r["question_id"], r["model"])))
    return sorted(by_file)
