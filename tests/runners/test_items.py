"""``items=``: every runner runs exactly the item ids it is given (issue 12, item 7: the chunks of a
sequential run), each with its own prompt, and a longer list later generates only the new items
(the generation caches answer the rest). Real lm-eval / LiveBench / LiveCodeBench runners against
a scripted chat server; SciCode's selection without a sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quantgate.runners import lmeval
from quantgate.runners.code import scicode
from quantgate.runners.registry import run_case
from quantgate.runs import RunError
from quantgate.suites import load_suite
from tests.support import LIVEBENCH_FIXTURES, REPO, tiny_reply

ARITH = REPO / "tests" / "fixtures" / "tiny" / "arith.jsonl"
ARITH_ROWS = [json.loads(line) for line in ARITH.read_text().splitlines()]
LCB = REPO / "tests" / "fixtures" / "lcb" / "problems.jsonl"
SCICODE = REPO / "tests" / "fixtures" / "scicode" / "problems.jsonl"
FENCE = "```"


def _suite(folder: Path, **extra_tasks):
    spec = {
        "model": "m",
        "precisions": {"bf16": {"checkpoint": "org/m"}, "fp8": {"checkpoint": "org/m-fp8"}},
        "generation": {"temperature": 0.0, "max_gen_toks": 16, "seed": 7},
        "tasks": {
            "arith": {
                "runner": "lmeval",
                "lmeval_task": "tiny_arith",
                "metric": "integer_match,none",
                "data_files": {"test": str(ARITH)},
                "num_concurrent": 2,
            },
            "livebench": {
                "runner": "livebench",
                "release": "2024-11-25",
                "questions_dir": str(LIVEBENCH_FIXTURES / "tiny"),
                "scorer": "quantgate.tasks.scoring:livebench_tiny_score",
                "num_concurrent": 2,
            },
            "lcb": {
                "runner": "livecodebench",
                "num_concurrent": 2,
                "code": {"path": str(LCB), "workers": 2},
            },
            **extra_tasks,
        },
    }
    (folder / "s.yaml").write_text(yaml.safe_dump(spec))
    return load_suite(folder / "s.yaml")


def _reply(body: dict) -> str:
    reply = tiny_reply(body["messages"][-1]["content"])
    return reply if reply != "I do not know." else f"{FENCE}python\nprint(1)\n{FENCE}"


def _prompts(server) -> list[str]:
    return [b["messages"][-1]["content"] for b in server.bodies]


def _samples(run) -> list[dict]:
    return [json.loads(line) for line in run.samples_path.read_text().splitlines()]


@pytest.mark.slow
def test_lmeval_runs_exactly_the_docs_asked_for_each_with_its_own_prompt(tmp_path, scripted_chat):
    """lm-eval 0.4.13 maps the i-th selected doc (in dataset order) to the i-th id as given: an
    unsorted list would have scored doc 2's answer as doc 11's. The runner sorts them."""
    suite = _suite(tmp_path)
    server = scripted_chat(_reply, model="m")
    endpoint = server.endpoint(checkpoint="org/m", engine="transformers", engine_version="1")
    root = tmp_path / "qg"
    run = run_case(suite, "arith", "fp8", endpoint, root=root, items=["11", "2", "7"])
    assert set(run.scores) == {"11", "2", "7"} and run.mean == 1.0
    for sample in _samples(run):  # every item scored on its own doc
        assert sample["target"] == ARITH_ROWS[int(sample["item"])]["answer"]
    asked = {f"Question: {ARITH_ROWS[i]['question']}" for i in (2, 7, 11)}
    assert {p.split("\nAnswer:")[0] for p in _prompts(server)} == asked
    assert run.provenance["selected_items"] == 3 and run.provenance["limit"] is None

    longer = run_case(suite, "arith", "fp8", endpoint, root=root, items=["11", "2", "7", "40"])
    assert set(longer.scores) == {"11", "2", "7", "40"}
    assert len(server.bodies) == 4  # one new request: the first three came from the cache
    assert ARITH_ROWS[40]["question"] in _prompts(server)[-1]


@pytest.mark.slow
def test_lmeval_items_past_the_end_or_not_doc_ids_are_run_errors(tmp_path, scripted_chat):
    suite = _suite(tmp_path)
    server = scripted_chat(_reply, model="m")
    endpoint = server.endpoint(checkpoint="org/m")
    with pytest.raises(RunError, match="refused the items"):
        run_case(suite, "arith", "fp8", endpoint, root=tmp_path / "qg", items=["1", "100000"])
    with pytest.raises(RunError, match="'q7' is not an lm-eval item id"):
        run_case(suite, "arith", "fp8", endpoint, root=tmp_path / "qg", items=["q7"])
    with pytest.raises(ValueError, match="exclude each other"):
        run_case(suite, "arith", "fp8", endpoint, root=tmp_path / "qg", items=["1"], limit=3)
    assert not server.bodies


def test_group_items_select_docs_of_each_member_and_run_only_those_members(tmp_path):
    suite = _suite(
        tmp_path,
        pro={"runner": "lmeval", "lmeval_task": "mmlu_pro", "metric": "exact_match,none"},
    )
    items = ["mmlu_pro_law/9", "mmlu_pro_math/3", "mmlu_pro_law/1"]
    tasks, samples = lmeval.item_selection(suite, "pro", "mmlu_pro", items)
    assert tasks == ["mmlu_pro_law", "mmlu_pro_math"]  # the other 12 subjects do not run
    assert samples == {"mmlu_pro_law": [1, 9], "mmlu_pro_math": [3]}  # sorted for lm-eval
    assert 9 in samples["mmlu_pro_law"] and 2 not in samples["mmlu_pro_law"]
    plain_tasks, plain = lmeval.item_selection(suite, "arith", "spec", ["5", "3"])
    assert plain_tasks == ["spec"] and plain == {"tiny_arith": [3, 5]}
    assert lmeval.item_selection(suite, "arith", "spec", None) == (["spec"], None)
    with pytest.raises(RunError, match="mix plain doc ids"):
        lmeval.item_selection(suite, "pro", "mmlu_pro", ["3", "mmlu_pro_law/1"])
    with pytest.raises(RunError, match="with data_files"):
        lmeval.item_selection(suite, "arith", "spec", ["tiny_arith/1"])


@pytest.mark.parametrize(
    "config, refused",
    [
        ({"num_fewshot": 0}, False),
        ({"num_fewshot": 5, "fewshot_config": {"sampler": "first_n"}}, False),
        ({"num_fewshot": 5, "fewshot_config": {"sampler": "default"}}, True),
        ({"num_fewshot": 3}, True),  # no fewshot_config: lm-eval's default sampler, at random
    ],
)
def test_a_task_with_random_few_shot_examples_cannot_run_selected_items(config, refused, tmp_path):
    suite = _suite(tmp_path)
    result = {"configs": {"tiny_arith": config}}
    if refused:
        with pytest.raises(RunError, match="few-shot examples"):
            lmeval._check_fewshot(result, {"tiny_arith": [1]}, suite, "arith")
    else:
        lmeval._check_fewshot(result, {"tiny_arith": [1]}, suite, "arith")


@pytest.mark.slow
def test_livebench_runs_the_question_ids_asked_for_and_reuses_stored_answers(
    tmp_path, scripted_chat
):
    suite = _suite(tmp_path)
    server = scripted_chat(_reply, model="m")
    endpoint = server.endpoint(checkpoint="org/m")
    root = tmp_path / "qg"
    everything = run_case(suite, "livebench", "bf16", endpoint, root=tmp_path / "all")
    ids = list(everything.scores)
    chunk = [ids[9], ids[0], ids[4]]
    sent = len(server.bodies)
    run = run_case(suite, "livebench", "fp8", endpoint, root=root, items=chunk)
    assert list(run.scores) == chunk and len(server.bodies) == sent + 3
    assert {s["item"] for s in _samples(run)} == set(chunk)
    assert run.provenance["livebench"]["n"] == 3 and run.provenance["selected_items"] == 3
    longer = run_case(suite, "livebench", "fp8", endpoint, root=root, items=[*chunk, ids[20]])
    assert len(longer.scores) == 4 and len(server.bodies) == sent + 4  # only the new one
    assert {k: longer.scores[k] for k in chunk} == run.scores
    with pytest.raises(RunError, match="1 question ids not in release"):
        run_case(suite, "livebench", "fp8", endpoint, root=root, items=[ids[0], "nope"])


@pytest.mark.slow
def test_livecodebench_runs_the_problem_ids_asked_for_from_the_cache(tmp_path, scripted_chat):
    suite = _suite(tmp_path)
    server = scripted_chat(_reply, model="m")
    endpoint = server.endpoint(checkpoint="org/m")
    root = tmp_path / "qg"
    run = run_case(suite, "lcb", "fp8", endpoint, root=root, items=["lcbfx_even", "lcbfx_sum"])
    assert list(run.scores) == ["lcbfx_even", "lcbfx_sum"] and len(server.bodies) == 2
    longer = run_case(
        suite, "lcb", "fp8", endpoint, root=root, items=["lcbfx_even", "lcbfx_sum", "lcbfx_mean"]
    )
    assert set(longer.scores) == {"lcbfx_even", "lcbfx_sum", "lcbfx_mean"}
    assert len(server.bodies) == 3  # the earlier two from the client's cache
    with pytest.raises(RunError, match="1 LiveCodeBench problem ids not among"):
        run_case(suite, "lcb", "fp8", endpoint, root=root, items=["lcbfx_sum", "abc999_z"])


@pytest.mark.parametrize(
    "items_mode, items, problems",
    [
        ("problems", ["91", "90"], ["91", "90"]),
        ("steps", ["90.3", "91.1", "90.1"], ["90", "91"]),  # a step runs its whole problem
    ],
)
def test_scicode_selects_the_problems_of_the_ids_asked_for(items_mode, items, problems, tmp_path):
    (tmp_path / "s.yaml").write_text(
        "model: m\nprecisions:\n  bf16: {checkpoint: org/m}\ntasks:\n  sci:\n"
        f"    runner: scicode\n    code: {{path: {SCICODE}, items: {items_mode}}}\n"
    )
    suite = load_suite(tmp_path / "s.yaml")
    chosen = scicode.load_problems(suite, "sci", None, items)
    assert [str(p["problem_id"]) for p in chosen] == problems
    with pytest.raises(RunError, match="SciCode problem/step ids not among"):
        scicode.load_problems(suite, "sci", None, ["77"])


def test_run_case_refuses_empty_and_repeated_items(tmp_path):
    suite = _suite(tmp_path)
    with pytest.raises(RunError, match="items= is empty"):
        run_case(suite, "arith", "fp8", lambda: None, root=tmp_path, items=[])
    with pytest.raises(RunError, match="items= repeats 3"):
        run_case(suite, "arith", "fp8", lambda: None, root=tmp_path, items=["3", "1", "3"])


def test_run_case_fails_a_runner_that_did_not_score_exactly_the_items(tmp_path, monkeypatch):
    from quantgate.runners import registry
    from quantgate.runs import TaskRun

    def sloppy(task, suite, precision, endpoint, *, out_dir, cache_dir, limit, items):
        return TaskRun(task=task, precision=precision, scores={"1": 1.0, "9": 0.0})

    monkeypatch.setitem(registry.RUNNERS, "lmeval", sloppy)
    with pytest.raises(RunError, match="1 missing: 2; 1 not asked for: 9"):
        run_case(_suite(tmp_path), "arith", "fp8", lambda: None, root=tmp_path, items=["1", "2"])


@pytest.mark.slow
def test_a_damaged_lmeval_run_memo_is_a_cache_miss_not_a_crash(tmp_path, scripted_chat):
    """The finished-run memo (run-<key>/run.json) is a cache: one that is not a stored run (a
    disk fault, an edit) is rebuilt from the request cache, sending nothing new."""
    suite = _suite(tmp_path)
    server = scripted_chat(_reply, model="m")
    endpoint = server.endpoint(checkpoint="org/m", engine="transformers", engine_version="1")
    root = tmp_path / "qg"
    first = run_case(suite, "arith", "fp8", endpoint, root=root, items=["2", "7"])
    sent = len(server.bodies)
    (memo,) = (root / "cache" / "lmeval" / "s" / "fp8" / "arith").glob("*/run-*/run.json")
    memo.write_bytes(b"\xff not a run")
    again = run_case(suite, "arith", "fp8", endpoint, root=root, items=["2", "7"])
    assert again.scores == first.scores and len(server.bodies) == sent
    assert json.loads(memo.read_text())["scores"] == first.scores  # rewritten
