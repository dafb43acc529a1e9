"""LiveBench's coding category (LCB_generation, coding_completion) graded as LiveBench grades it,
with every program in quantgate's sandbox, never on the host (issue 14, item 1): right, wrong and
hostile programs, the partial solution prepended, private tests decoded without unpickling, and
the code_generation scorer (host execution upstream) refused."""

from __future__ import annotations

import base64
import json
import pickle
import zlib

import pytest

from quantgate.runners.livebench.judge import LiveBenchScorer, UnsupportedTask, route
from tests.support import REPO

FENCE = "```"
PUBLIC = [{"input": "2\n3 4\n", "output": "7\n", "testtype": "stdin"}]
PRIVATE = [{"input": "3\n1 2 3\n", "output": "6\n", "testtype": "stdin"}]


def question(task: str = "LCB_generation", **extra) -> dict:
    return {
        "question_id": "q1",
        "category": "coding",
        "task": task,
        "question_title": "sum",
        "turns": ["Given N and then N integers, print their sum."],
        "public_test_cases": json.dumps(PUBLIC),
        # upstream's storage: base64(zlib(pickle(json string))) — decoded here without pickle
        "private_test_cases": base64.b64encode(
            zlib.compress(pickle.dumps(json.dumps(PRIVATE)))
        ).decode(),
        "original_json": {"metadata": "{}"},
        "livebench_release_date": "2024-11-25",
        **extra,
    }


def fenced(code: str) -> str:
    return f"Here it is:\n{FENCE}python\n{code}\n{FENCE}\n"


SUM = "n = int(input())\nprint(sum(map(int, input().split())))"


@pytest.fixture(scope="module")
def scorer():
    return LiveBenchScorer()


def test_a_right_program_scores_1_and_a_wrong_one_0(scorer):
    assert route(question()) == "lcb_generation"
    assert scorer(question(), fenced(SUM)) == 1.0
    # right on the public test only: the private one fails it
    assert scorer(question(), fenced("input(); input(); print(7)")) == 0.0
    assert scorer(question(), "no code at all") == 0.0


def test_the_program_runs_in_the_sandbox_not_on_the_host(scorer):
    """A program that reads a file of this checkout (a LiveCodeBench answer key) and prints the
    right answer only if it could: in the sandbox the checkout is not there."""
    spy = (
        "import os\n"
        f"seen = os.path.exists({str(REPO / 'tests' / 'fixtures' / 'lcb' / 'problems.jsonl')!r})\n"
        "n = int(input())\nxs = list(map(int, input().split()))\n"
        "print(sum(xs) if seen else -1)"
    )
    assert scorer(question(), fenced(spy)) == 0.0  # on the host it would have scored 1


def test_coding_completion_gets_its_partial_solution_prepended(scorer):
    partial = "def total(xs):\n    return sum(xs)\n"
    completion = question("coding_completion", partial_solution=partial)
    body = "n = int(input())\nprint(total(map(int, input().split())))"
    assert route(completion) == "lcb_generation"
    assert scorer(completion, fenced(body)) == 1.0  # total() comes from the partial solution
    assert scorer(completion, fenced(partial + body)) == 1.0  # already there: not twice


def test_functional_problems_call_the_metadata_function(scorer):
    functional = question(
        public_test_cases=json.dumps(
            [{"input": "[1, 2]\n3", "output": "[0, 1]", "testtype": "functional"}]
        ),
        private_test_cases="[]",
        original_json={"metadata": json.dumps({"func_name": "twoSum"})},
        turns=["Return the indices of the two numbers adding up to target."],
    )
    code = (
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        return next([i, j] for j in range(len(nums)) for i in range(j)\n"
        "                    if nums[i] + nums[j] == target)"
    )
    assert scorer(functional, fenced(code)) == 1.0


def test_code_generation_would_run_on_the_host_and_is_refused(scorer):
    with pytest.raises(UnsupportedTask, match="run the model's programs on the host"):
        scorer(question("code_generation"), fenced(SUM))
