"""Every generation cache is keyed by what answered (issue 10, item 1): the lm-eval request
cache, LiveBench's answer tree and the code runners' client cache. A run against the same
answerer re-scores from the cache; a run against another one (another engine or engine version,
another build of the checkpoint, another deployment URL or served model) sends its own requests
and is graded on its own answers, never on answers another server left in the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quantgate.runners.registry import run_case
from quantgate.runs import Endpoint, PendingEndpoint
from quantgate.suites import load_suite
from tests.support import LIVEBENCH_FIXTURES, REPO, tiny_reply

ARITH = REPO / "tests" / "fixtures" / "tiny" / "arith.jsonl"
LCB = REPO / "tests" / "fixtures" / "lcb" / "problems.jsonl"
FENCE = "```"


def _suite(folder: Path):
    spec = {
        "model": "m",
        "precisions": {"bf16": {"checkpoint": "org/m"}},
        "generation": {"temperature": 0.0, "max_gen_toks": 16, "seed": 7},
        "tasks": {
            "arith": {
                "runner": "lmeval",
                "lmeval_task": "tiny_arith",
                "metric": "integer_match,none",
                "data_files": {"test": str(ARITH)},
                "limit": 6,
                "num_concurrent": 2,
            },
            "livebench": {
                "runner": "livebench",
                "release": "2024-11-25",
                "questions_dir": str(LIVEBENCH_FIXTURES / "tiny"),
                "scorer": "quantgate.tasks.scoring:livebench_tiny_score",
                "limit": 6,
                "num_concurrent": 2,
            },
            "lcb": {
                "runner": "livecodebench",
                "limit": 2,
                "num_concurrent": 2,
                "code": {"path": str(LCB), "workers": 2},
            },
        },
    }
    (folder / "s.yaml").write_text(yaml.safe_dump(spec))
    return load_suite(folder / "s.yaml")


SUM = "n = int(input())\nprint(sum(map(int, input().split())))"


def _right(body: dict) -> str:
    """Right answers for the tiny questions; for the code problems, a program solving the first
    one (lcbfx_sum)."""
    reply = tiny_reply(body["messages"][-1]["content"])
    return reply if reply != "I do not know." else f"{FENCE}python\n{SUM}\n{FENCE}"


def _wrong(body: dict) -> str:
    return "I do not know."


MANAGED = {"checkpoint": "org/m", "engine": "transformers", "engine_version": "5.17.0"}
# (what answered first, what answers second): every pair differs in one thing the cache must see
OTHER_ANSWERERS = {
    "another engine": (MANAGED, {**MANAGED, "engine": "vllm", "engine_version": "0.26.0"}),
    "another engine version": (MANAGED, {**MANAGED, "engine_version": "5.18.0"}),
    "another build of the checkpoint": (
        {**MANAGED, "revision": "build-1"},
        {**MANAGED, "revision": "build-2"},
    ),
    "another deployment": ({"engine": "external"}, {"engine": "external"}),  # other URLs
    "another served model": ({"engine": "external"}, {"engine": "external", "model": "other"}),
}


def _endpoint(server, fields: dict) -> Endpoint:
    fields = dict(fields)
    return server.endpoint(fields.pop("model", None), **fields)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arith", "livebench", "lcb"])
@pytest.mark.parametrize("change", list(OTHER_ANSWERERS))
def test_another_answerer_gets_its_own_requests_and_its_own_grade(
    task, change, tmp_path, scripted_chat
):
    suite = _suite(tmp_path)
    first, second = OTHER_ANSWERERS[change]
    right = scripted_chat(_right, model="m")
    before = run_case(suite, task, "bf16", _endpoint(right, first), root=tmp_path / "qg")
    assert before.mean > 0 and right.bodies
    if change == "another served model":
        wrong = right  # the same URL serves another model now
        wrong.reply = _wrong
    else:
        wrong = scripted_chat(_wrong, model="m")
    sent = len(wrong.bodies)
    after = run_case(suite, task, "bf16", _endpoint(wrong, second), root=tmp_path / "qg")
    assert len(wrong.bodies) > sent, f"{change}: no request reached the second server"
    assert after.mean == 0.0 and set(after.scores) == set(before.scores)
    # "I do not know." is an answer (not empty), but there is no integer or program to grade
    assert not after.hygiene["empty"] and not before.hygiene["empty"]
    if task != "livebench":  # LiveBench's scorers judge the whole text
        assert after.hygiene["no_answer"] == dict.fromkeys(after.scores, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arith", "livebench", "lcb"])
def test_the_same_answerer_rescores_from_the_cache_without_starting_anything(
    task, tmp_path, scripted_chat
):
    suite = _suite(tmp_path)
    server = scripted_chat(_right, model="m")
    endpoint = server.endpoint(**MANAGED)
    first = run_case(suite, task, "bf16", endpoint, root=tmp_path / "qg")
    sent = len(server.bodies)

    def never_started() -> Endpoint:
        raise AssertionError("everything is cached: the server must not be started")

    if task == "livebench":  # LiveBench reads stored answers before it needs a server
        source = PendingEndpoint(endpoint.answerer(), never_started)
    else:  # the others send from the client, whose answers come from the cache
        source = server.endpoint(**MANAGED)
    again = run_case(suite, task, "bf16", source, root=tmp_path / "qg")
    assert again.scores == first.scores and len(server.bodies) == sent


def test_a_managed_answerer_ignores_the_port_and_served_name():
    one = Endpoint("http://127.0.0.1:8001/v1", "/cache/tiny/bf16", **MANAGED)
    two = Endpoint("http://127.0.0.1:8002/v1", "tiny-bf16", **MANAGED)
    assert one.answerer() == two.answerer()
    assert one.answerer() != Endpoint("http://127.0.0.1:8001/v1", "m").answerer()  # external
    a, b = Endpoint("http://a/v1", "m"), Endpoint("http://b/v1", "m")
    assert a.answerer() != b.answerer() != Endpoint("http://b/v1", "n").answerer()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arith", "livebench", "lcb"])
def test_another_precision_setting_gets_its_own_requests(task, tmp_path, scripted_chat):
    """The same server build answering under other precision settings (vLLM's --quantization,
    server arguments, environment) is another answerer: no cached answer is reused."""
    suite = _suite(tmp_path)
    right = scripted_chat(_right, model="m")
    before = run_case(suite, task, "bf16", right.endpoint(**MANAGED), root=tmp_path / "qg")
    assert before.mean > 0
    spec = yaml.safe_load((tmp_path / "s.yaml").read_text())
    spec["precisions"]["bf16"]["quantization"] = "fp8"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    wrong = scripted_chat(_wrong, model="m")
    after = run_case(
        load_suite(tmp_path / "s.yaml"),
        task,
        "bf16",
        wrong.endpoint(**MANAGED),
        root=tmp_path / "qg",
    )
    assert wrong.bodies, "no request reached the server of the new setting"
    assert after.mean == 0.0
