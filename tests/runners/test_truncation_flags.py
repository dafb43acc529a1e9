"""The hygiene gate's ``truncated`` flag (issue 12, item 8) beyond an unclosed think block: an
answer the server stopped at the token limit. lm-eval's chat client drops the server's
finish_reason and usage; quantgate's subclass keeps them beside the request cache, so a re-run
that lm-eval answers from that cache still knows. LiveBench's answer rows carry finish_reason.
Real lm-eval and LiveBench runners against a scripted chat server."""

from __future__ import annotations

import json
import threading

import pytest

from quantgate.runners import lmeval
from quantgate.runners.registry import run_case
from tests.runners.test_items import ARITH_ROWS, FENCE, LCB, SCICODE, _suite
from tests.support import tiny_reply

# tiny_arith at max_gen_toks 16: doc -> what the server says about its (right) answer
SAID = {
    2: {"finish_reason": "length", "completion_tokens": 16},  # stopped by the limit
    7: {"finish_reason": None, "completion_tokens": 16},  # no finish_reason: the tokens reached it
    11: {"finish_reason": None, "completion_tokens": 5},  # no finish_reason, short
    40: {"finish_reason": "stop", "completion_tokens": 16},  # ended on its own at the limit
}
TRUNCATED = {"2", "7"}


def _said(body: dict) -> dict | str:
    text = body["messages"][-1]["content"]
    for doc, said in SAID.items():
        if text == f"Question: {ARITH_ROWS[doc]['question']}\nAnswer:":
            return {"content": tiny_reply(text), **said}
    return tiny_reply(text)


def _samples(run) -> dict[str, dict]:
    rows = [json.loads(line) for line in run.samples_path.read_text().splitlines()]
    return {row["item"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("concurrent", [1, 2])  # lm-eval's synchronous and asyncio paths
def test_lmeval_answers_stopped_by_the_token_limit_count_as_truncated(
    concurrent, tmp_path, scripted_chat
):
    suite = _suite(tmp_path)
    task = suite.tasks["arith"].model_copy(update={"num_concurrent": concurrent})
    suite = suite.model_copy(update={"tasks": {**suite.tasks, "arith": task}})
    server = scripted_chat(_said, model="m")
    endpoint = server.endpoint(checkpoint="org/m")
    root = tmp_path / "qg"
    items = [str(doc) for doc in SAID]
    run = run_case(suite, "arith", "fp8", endpoint, root=root, items=items)
    samples = _samples(run)
    assert {i for i, s in samples.items() if s["truncated"]} == TRUNCATED
    assert run.truncated == 2 and set(run.hygiene["truncated"]) == TRUNCATED
    assert samples["2"]["finish_reason"] == "length" and samples["7"]["completion_tokens"] == 16
    assert run.mean == 1.0  # the flag is hygiene's, not the score's

    # a longer chunk: lm-eval's request cache answers the first four, the flags stay
    longer = run_case(suite, "arith", "fp8", endpoint, root=root, items=[*items, "3"])
    assert len(server.bodies) == len(items) + 1
    assert {i for i, s in _samples(longer).items() if s["truncated"]} == TRUNCATED


def test_the_token_limit_rule():
    assert lmeval.hit_token_limit({"finish_reason": "length"}, {"max_gen_toks": 99}) is True
    assert lmeval.hit_token_limit({"finish_reason": "stop", "completion_tokens": 99}, {}) is False
    limit = {"max_gen_toks": 16}
    assert lmeval.hit_token_limit({"finish_reason": None, "completion_tokens": 16}, limit)
    assert not lmeval.hit_token_limit({"finish_reason": None, "completion_tokens": 15}, limit)
    assert lmeval.hit_token_limit({"completion_tokens": 8}, {"max_tokens": 8, "max_gen_toks": 99})
    assert lmeval.hit_token_limit(None, limit) is None  # an answer cached before the log
    assert lmeval.hit_token_limit({"completion_tokens": 16}, {}) is None  # no limit known


def test_a_torn_finish_log_line_is_skipped(tmp_path):
    log = tmp_path / "finish_r0.jsonl"
    log.write_text('{"prompt_hash": "a", "finish_reason": "length"}\n{"prompt_hash": "b", "fin')
    assert lmeval.read_finish_log(log) == {"a": {"prompt_hash": "a", "finish_reason": "length"}}
    assert lmeval.read_finish_log(tmp_path / "none.jsonl") == {}


@pytest.mark.slow
def test_livebench_answers_stopped_by_the_token_limit_count_as_truncated(tmp_path, scripted_chat):
    suite = _suite(tmp_path)
    texts: dict[str, str] = {}
    lock = threading.Lock()  # the server answers concurrently

    def said(body: dict) -> dict:
        text = body["messages"][-1]["content"]
        with lock:  # the first question asked is cut, the others end on their own
            texts.setdefault(text, "length" if not texts else "stop")
        return {"content": tiny_reply(text), "finish_reason": texts[text]}

    server = scripted_chat(said, model="m")
    run = run_case(suite, "livebench", "bf16", server.endpoint(checkpoint="org/m"), root=tmp_path)
    samples = _samples(run)
    cut = [i for i, s in samples.items() if s["finish_reason"] == "length"]
    assert len(cut) == 1 and len(samples) > 1
    assert {i for i, s in samples.items() if s["truncated"]} == set(cut)
    assert run.truncated == 1 and set(run.hygiene["truncated"]) == set(cut)


def test_a_livebench_row_without_finish_reason_uses_its_tokens():
    from quantgate.runners.livebench.run import stopped_by_limit

    asked = {"api_info": {"api_kwargs": {"max_tokens": 32}}}
    assert stopped_by_limit({"finish_reason": "length"})
    assert not stopped_by_limit({"finish_reason": "stop", "total_output_tokens": 32, **asked})
    assert stopped_by_limit({"finish_reason": None, "total_output_tokens": 32, **asked})
    assert not stopped_by_limit({"total_output_tokens": 31, **asked})
    assert not stopped_by_limit({"total_output_tokens": -1, **asked})  # not known
    assert not stopped_by_limit({"total_output_tokens": 99})


# the code runners: the client's answer carries finish_reason and usage.completion_tokens
LCB_ROWS = [json.loads(line) for line in LCB.read_text().splitlines()]
LCB_SAID = {  # problem -> what the server says about its reply, at max_gen_toks 16
    "lcbfx_sum": {"finish_reason": "length", "completion_tokens": 16},
    "lcbfx_mean": {"finish_reason": None, "completion_tokens": 16},  # the tokens reached it
    "lcbfx_twosum": {"finish_reason": None, "completion_tokens": 5},
    "lcbfx_even": {"finish_reason": "stop", "completion_tokens": 16},
}


@pytest.mark.slow
def test_livecodebench_answers_stopped_by_the_token_limit_count_as_truncated(
    tmp_path, scripted_chat
):
    def said(body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        qid = next(r["question_id"] for r in LCB_ROWS if r["question_content"] in prompt)
        return {"content": f"{FENCE}python\nprint(1)\n{FENCE}", **LCB_SAID[qid]}

    suite = _suite(tmp_path)
    endpoint = scripted_chat(said, model="m").endpoint(checkpoint="org/m")
    for _ in range(2):  # the second from the client's cache, which keeps the token counts
        run = run_case(suite, "lcb", "fp8", endpoint, root=tmp_path / "qg")
        samples = _samples(run)
        assert {i for i, s in samples.items() if s["truncated"]} == {"lcbfx_sum", "lcbfx_mean"}
        assert run.truncated == 2 and samples["lcbfx_mean"]["completion_tokens"] == 16


@pytest.mark.slow
def test_scicode_steps_stopped_by_the_token_limit_count_as_truncated(tmp_path, scripted_chat):
    from tests.scoring.test_scicode import RIGHT, write_targets

    write_targets(tmp_path / "test_data.h5")
    suite = _suite(
        tmp_path,
        sci={"runner": "scicode", "code": {"path": str(SCICODE), "h5_path": "test_data.h5"}},
    )
    steps = {"wrap": "90.1", "dist": "90.2", "stats": "90.3", "square": "91.1"}
    step_said = {
        "90.1": {"finish_reason": "length", "completion_tokens": 16},
        "90.2": {"finish_reason": None, "completion_tokens": 16},  # the tokens reached it
        "90.3": {"finish_reason": None, "completion_tokens": 15},
        "91.1": {"finish_reason": "stop", "completion_tokens": 16},
    }

    def said(body: dict) -> dict:
        next_step = body["messages"][-1]["content"].split("NEXT STEP")[1]
        name = next(n for n in steps if f"def {n}(" in next_step)
        code = f"{FENCE}python\nimport numpy as np\n\n{RIGHT[name]}\n{FENCE}\n"
        return {"content": code, **step_said[steps[name]]}

    run = run_case(suite, "sci", "bf16", scripted_chat(said, model="m").endpoint(), root=tmp_path)
    samples = _samples(run)
    assert {s["status"] for s in samples.values()} == {"passed"}
    assert {i for i, s in samples.items() if s["truncated"]} == {"90.1", "90.2"}
    assert samples["90.2"]["completion_tokens"] == 16


@pytest.mark.parametrize("by", ["keyword", "position"])
def test_the_finish_log_sees_the_request_however_lm_eval_passes_its_messages(by, monkeypatch):
    """lm-eval 0.4.13 calls ``amodel_call(session=..., sem=..., messages=...)``; a release that
    passes them by position must not silently lose every finish_reason."""
    import asyncio

    from lm_eval.api.registry import get_model
    from lm_eval.models.openai_completions import LocalChatCompletion

    seen = []

    async def parent(self, session, sem, messages, **kwargs):
        seen.append(lmeval._CONTEXTS.get())
        return None

    monkeypatch.setattr(LocalChatCompletion, "amodel_call", parent)
    chat = get_model(lmeval.chat_model())
    model = chat.__new__(chat)  # no server behind it: only amodel_call runs
    messages = ["prompt one", "prompt two"]
    if by == "keyword":
        call = model.amodel_call(session=None, sem=None, messages=messages, generate=True)
    else:
        call = model.amodel_call(None, None, messages, generate=True)
    asyncio.run(call)
    assert seen == [messages]
    assert lmeval._CONTEXTS.get() is None  # reset after the call
