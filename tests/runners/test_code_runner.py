"""The LiveCodeBench runner end to end against a scripted OpenAI-compatible server: generations
through the shared client and its cache, programs in the sandbox, pass@1 over repeats; dataset
selection (version files, date window, hub download) and the tiny fixture extraction."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quantgate.config import CodeTask
from quantgate.runners.code import livecodebench as lcb
from quantgate.suites import load_suite

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "lcb" / "problems.jsonl"
FENCE = "```"
REPLIES = {  # question_id -> reply per repeat (seed 1234 + repeat)
    "lcbfx_sum": [
        f"{FENCE}python\nn = int(input())\nprint(sum(map(int, input().split())))\n{FENCE}",
        f"{FENCE}python\nprint(6)\n{FENCE}",
    ],
    "lcbfx_mean": ["I cannot solve this.", "No code either."],
    "lcbfx_twosum": [
        f"First try:\n{FENCE}python\nwrong\n{FENCE}\nFinal:\n{FENCE}python\n"
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        return next([i, j] for j in range(len(nums)) for i in range(j)\n"
        f"                    if nums[i] + nums[j] == target)\n{FENCE}"
    ]
    * 2,
    "lcbfx_even": [
        f"{FENCE}python\nclass Solution:\n    def isEven(self, n):\n"
        f"        return n % 2 == 0\n{FENCE}",
        f"{FENCE}python\nclass Solution:\n    def isEven(self, n):\n"
        f"        raise RuntimeError\n{FENCE}",
    ],
}
QUESTIONS = {
    json.loads(line)["question_content"]: json.loads(line)["question_id"]
    for line in FIXTURE.read_text().splitlines()
}


def _reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    qid = next(q for text, q in QUESTIONS.items() if text in prompt)
    return REPLIES[qid][body["seed"] - 1234]


@pytest.fixture
def chat(scripted_chat):
    return scripted_chat(_reply, model="m")


def _suite(tmp_path, repeats=2):
    (tmp_path / "s.yaml").write_text(
        "model: m\nprecisions:\n  bf16: {checkpoint: org/m}\n  fp8: {checkpoint: org/m-fp8}\n"
        f"tasks:\n  lcb:\n    runner: livecodebench\n    repeats: {repeats}\n"
        f"    num_concurrent: 2\n    code: {{path: {FIXTURE}, workers: 2}}\n"
    )
    return load_suite(tmp_path / "s.yaml")


@pytest.mark.slow
def test_generations_are_cached_and_graded_in_the_sandbox(chat, tmp_path):
    suite = _suite(tmp_path)
    kwargs = {"out_dir": tmp_path / "out", "cache_dir": tmp_path / "cache"}
    run = lcb.run("lcb", suite, "bf16", chat.endpoint(checkpoint="org/m"), **kwargs)
    # pass@1 per problem over two repeats: c / n
    assert run.scores == {
        "lcbfx_sum": 0.5,
        "lcbfx_mean": 0.0,
        "lcbfx_twosum": 1.0,
        "lcbfx_even": 0.5,
    }
    assert len(chat.bodies) == 8 and {b["seed"] for b in chat.bodies} == {1234, 1235}
    assert chat.bodies[0]["messages"][0]["role"] == "system"  # upstream's prompt
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    by = {(s["item"], s["repeat"]): s for s in samples}
    assert (
        by[("lcbfx_sum", 1)]["status"] == "wrong_answer"
        and by[("lcbfx_sum", 1)]["failed_test"] == 2
    )
    assert by[("lcbfx_mean", 0)]["status"] == "no_code" and run.empty == 0  # it did answer
    assert run.hygiene["no_answer"] == {"lcbfx_mean": 1.0}  # but no program to grade
    assert by[("lcbfx_even", 1)]["status"] == "runtime_error"
    assert run.provenance["sandbox"] == by[("lcbfx_sum", 0)]["isolation"] != "none"
    assert run.provenance["request_params"]["max_tokens"] == suite.generation.max_gen_toks

    # re-scored from the cache
    again = lcb.run("lcb", suite, "bf16", chat.endpoint(checkpoint="org/m"), **kwargs)
    assert again.scores == run.scores and len(chat.bodies) == 8
    # another precision: no sharing
    lcb.run("lcb", suite, "fp8", chat.endpoint(checkpoint="org/m"), limit=1, **kwargs)
    assert len(chat.bodies) == 10


def test_version_tags_map_to_the_datasets_files():
    assert lcb.version_files("release_v1") == ["test.jsonl"]
    assert lcb.version_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert lcb.version_files("v2") == ["test2.jsonl"]
    assert lcb.version_files("v4_v6") == ["test4.jsonl", "test5.jsonl", "test6.jsonl"]
    assert len(lcb.version_files("release_latest")) == 6
    for bad in ("release_v9", "v3_v2", "latest"):
        with pytest.raises(ValueError, match="code.version"):
            lcb.version_files(bad)


def test_hub_rows_come_from_the_pinned_files_and_the_window_filters(monkeypatch, tmp_path):
    fetched = []

    def fake_download(repo_id, filename, repo_type, revision):
        fetched.append((repo_id, filename, repo_type, revision))
        return str(FIXTURE)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    (tmp_path / "s.yaml").write_text(
        "model: m\nprecisions:\n  bf16: {checkpoint: org/m}\ntasks:\n  lcb:\n"
        "    runner: livecodebench\n    code: {version: release_v2, revision: abc123}\n"
    )
    suite = load_suite(tmp_path / "s.yaml")
    rows = lcb.load_rows(suite, "lcb")
    assert fetched == [
        ("livecodebench/code_generation_lite", f, "dataset", "abc123")
        for f in ("test.jsonl", "test2.jsonl")
    ]
    assert len(rows) == 8
    window = CodeTask(start_date="2024-10-01", end_date="2024-10-12", exclude=["lcbfx_even"])
    assert [p.question_id for p in lcb.select(rows, window, None)] == ["lcbfx_twosum"] * 2
    assert [p.question_id for p in lcb.select(rows[:4], CodeTask(), 2)] == [
        "lcbfx_sum",
        "lcbfx_mean",
    ]


def test_the_tiny_fixture_extraction_turns_answers_into_programs():
    rows = [
        json.loads(line)
        for line in (REPO / "tests/fixtures/tiny/code_lcb.jsonl").read_text().splitlines()
    ]
    functional, stdin = lcb.select(rows[:2], CodeTask(), None)
    assert lcb.tiny_answer_code("The answer is 15.", stdin) == "print(15)\n"
    assert lcb.tiny_answer_code("mice", stdin) == "print('mice')\n"
    assert "return 15" in lcb.tiny_answer_code("The answer is 15.", functional)
    assert lcb.tiny_answer_code("I think 15", stdin) == ""


def test_the_tiny_fixture_is_what_its_generator_writes(tmp_path):
    script = REPO / "tests/fixtures/tiny/make_code_lcb.py"
    committed = (REPO / "tests/fixtures/tiny/code_lcb.jsonl").read_text()
    copy = tmp_path / "make_code_lcb.py"
    copy.write_text(script.read_text())
    for name in ("arith.jsonl", "words.jsonl"):
        (tmp_path / name).write_text((REPO / "tests/fixtures/tiny" / name).read_text())
    subprocess.run([sys.executable, str(copy)], check=True)
    assert (tmp_path / "code_lcb.jsonl").read_text() == committed


@pytest.mark.slow
def test_a_rerun_reuses_the_sandbox_verdicts_of_the_same_programs(chat, tmp_path, monkeypatch):
    """A cached re-run (issue 13, item 6) generates nothing and executes nothing again: a
    program's verdict on the same tests, limits and isolation is kept beside the generation
    cache. Timeouts and limits are never kept (they depend on the machine's load)."""
    from quantgate.sandbox import Sandbox

    suite = _suite(tmp_path)
    kwargs = {"out_dir": tmp_path / "out", "cache_dir": tmp_path / "cache"}
    first = lcb.run("lcb", suite, "bf16", chat.endpoint(checkpoint="org/m"), **kwargs)
    executed: list[str] = []
    real_run = Sandbox.run

    def counting_run(self, *args, **kw):
        executed.append("run")
        return real_run(self, *args, **kw)

    monkeypatch.setattr(Sandbox, "run", counting_run)
    again = lcb.run("lcb", suite, "bf16", chat.endpoint(checkpoint="org/m"), **kwargs)
    assert again.scores == first.scores and executed == []
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    assert {(s["item"], s["repeat"], s["status"]) for s in samples} >= {
        ("lcbfx_sum", 0, "passed"),
        ("lcbfx_sum", 1, "wrong_answer"),
        ("lcbfx_even", 1, "runtime_error"),
    }
    # another precision's answers are another cache: its programs run
    lcb.run("lcb", suite, "fp8", chat.endpoint(checkpoint="org/m-fp8"), **kwargs)
    assert executed


def test_timeouts_and_limits_are_judged_again_other_verdicts_are_kept(tmp_path):
    from quantgate.runners.code.common import JudgedSandbox
    from quantgate.sandbox import IOTest, Limits, Verdict

    class Box:
        isolation, limits, python, calls = "unshare", Limits(), sys.executable, []

        def judge(self, files, argv, tests, *, limits=None):
            self.calls.append(files["main.py"])
            return Verdict(files["main.py"], None, "", self.isolation)

    tests = [IOTest("1\n", "1")]
    path = tmp_path / "verdicts.jsonl"
    for status in ("passed", "wrong_answer", "runtime_error", "timeout", "limit_exceeded"):
        first = JudgedSandbox(Box(), path)  # one session each, saved as run_code_task does
        first.judge({"main.py": status}, ["main.py"], tests)
        first.save()
    assert len(path.read_text().splitlines()) == 3
    box = JudgedSandbox(Box(), path)
    Box.calls.clear()
    for status in ("passed", "wrong_answer", "runtime_error", "timeout", "limit_exceeded"):
        assert box.judge({"main.py": status}, ["main.py"], tests).status == status
    assert Box.calls == ["timeout", "limit_exceeded"]
    # other tests, limits, isolation or interpreter are another key
    assert box.judge({"main.py": "passed"}, ["main.py"], [IOTest("2\n", "2")]).status == "passed"
    box.judge({"main.py": "passed"}, ["main.py"], tests, limits=Limits(wall_seconds=1))
    for field, value in (("isolation", "bwrap"), ("python", "/opt/python3.99/bin/python3")):
        other = Box()
        setattr(other, field, value)
        JudgedSandbox(other, path).judge({"main.py": "passed"}, ["main.py"], tests)
    assert Box.calls[-4:] == ["passed"] * 4


def test_a_verdict_is_kept_for_the_interpreter_that_gave_it(tmp_path, monkeypatch):
    """Another Python (a path, or an upgrade in place) judges again; what the box runs is
    looked at once per JudgedSandbox, never by starting it."""
    from quantgate.runners.code.common import JudgedSandbox
    from quantgate.sandbox import Limits

    class Box:
        isolation, limits, python = "unshare", Limits(), sys.executable

    def key(box) -> str:
        return JudgedSandbox(box, tmp_path / "v.jsonl")._key({"a.py": ""}, ["a.py"], [], Limits())

    ours = key(Box())
    assert key(Box()) == ours
    monkeypatch.setattr(sys, "version", sys.version + " (upgraded)")
    assert key(Box()) != ours
    other = Box()
    other.python = str(tmp_path / "python3")
    (tmp_path / "python3").write_text("#!/bin/sh\n")
    before = key(other)
    assert before not in (ours, key(Box())) and key(other) == before
    (tmp_path / "python3").write_text("#!/bin/sh\n# another build\n")  # replaced in place
    assert key(other) != before
