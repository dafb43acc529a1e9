"""The Qwen3-32B suite's own lm-eval tasks, offline: local data, a fake chat server, real lm-eval.

Each task runs through the real runner (``quantgate.runners.lmeval.run``): the suite's task
entry with ``data_files`` pointing at ``tests/fixtures/qwen3/`` (rows with the hub datasets'
fields), so ``task_spec`` wraps it in a one-task group over local JSON, exactly as a suite with
local data would. The fake server records every request and answers with canned Qwen3-style
replies (think blocks, boxed answers, traces cut off mid-thought), so the tests check the prompt
the model would see, the request body vLLM would get, and the per-item scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quantgate.runners import lmeval
from quantgate.runners.lmeval import our_task_names, task_spec
from quantgate.suites import load_suite
from quantgate.tasks.qwen3.utils import gpqa_choice_order
from quantgate.tasks.scoring import choice_letter, hle_match, normalise_answer, stated_answer

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests" / "accuracy" / "suites" / "qwen3-32b.yaml"
FIXTURES = REPO / "tests" / "fixtures" / "qwen3"
SYSTEM = (
    "Give only the final answer, in the format the question asks for. "
    "Do not explain or show your working."
)


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def user_prompt(body: dict) -> str:
    return body["messages"][-1]["content"]


def by_prompt(replies: dict[str, list[str]]):
    """A reply function: the first key contained in the user prompt picks the replies, one per
    repeat (the runner sends seed 1234 + repeat)."""

    def reply(body):
        for key, answers in replies.items():
            if key in user_prompt(body):
                return answers[(body["seed"] - 1234) % len(answers)]
        return "(no canned reply for this prompt)"  # scores 0: the test's scores show it

    return reply


@pytest.fixture
def run(tmp_path, scripted_chat):
    """``run(task, fixture, split, replies, **task_changes) -> (TaskRun, requests)``: one task of
    the real suite on a fixture file, against a scripted endpoint answering with ``replies``."""

    def _run(task_name, fixture, split, replies, **changes):
        suite = load_suite(SUITE)
        task = suite.tasks[task_name].model_copy(
            update={"data_files": {split: str(FIXTURES / fixture)}, **changes}
        )
        suite = suite.model_copy(update={"tasks": {**suite.tasks, task_name: task}})
        server = scripted_chat(by_prompt(replies))
        endpoint = server.endpoint("qwen3-32b-bf16", engine="vllm", engine_version="0.26.0")
        result = lmeval.run(
            task_name,
            suite,
            "bf16",
            endpoint,
            out_dir=tmp_path / "out",
            cache_dir=tmp_path / "cache",
        )
        return result, server.bodies

    return _run


# --- the suite's view of the tasks ---------------------------------------------------------------


def test_the_suite_names_our_tasks_and_the_shipped_group():
    suite = load_suite(SUITE)
    ours = {t.lmeval_task for t in suite.tasks.values() if t.runner == "lmeval"} - {"mmlu_pro"}
    assert ours == {
        "qwen3_math500",
        "qwen3_aime24",
        "qwen3_aime24_think",
        "qwen3_gpqa_diamond",
        "qwen3_hle",
    }
    assert ours <= our_task_names()


def test_the_suite_settings_and_its_profiles():
    suite = load_suite(SUITE)
    assert suite.name == "qwen3-32b" and suite.reference == "bf16"
    assert {p: (v.checkpoint, v.requires) for p, v in suite.precisions.items()} == {
        "bf16": ("Qwen/Qwen3-32B", ["gpu"]),
        "fp8": ("Qwen/Qwen3-32B-FP8", ["gpu"]),
        "nvfp4": ("RedHatAI/Qwen3-32B-NVFP4", ["gpu"]),
    }
    vllm = suite.engine.vllm
    assert (
        suite.engine.kind,
        vllm.tensor_parallel_size,
        vllm.gpu_memory_utilization,
        vllm.max_num_seqs,
        vllm.enforce_eager,
        vllm.disable_custom_all_reduce,
        vllm.attention_backend,
    ) == ("vllm", 1, 0.95, 256, False, False, "TRITON_ATTN")  # vLLM's defaults, CUDA graphs on
    assert vllm.max_model_len == 36864 and vllm.extra_args == []
    assert suite.engine.env == {}
    assert {n: t.num_concurrent for n, t in suite.tasks.items()} == {
        "mmlu_pro": 256,
        "gpqa_diamond": 256,
        "math500": 256,
        "aime24": 64,
        "aime24_think": 64,
        "hle": 256,
        "livecodebench": 256,
        "scicode": 64,
        "livebench": 256,
    }
    assert all(t.num_concurrent <= vllm.max_num_seqs for t in suite.tasks.values())
    gen = suite.generation
    assert gen.temperature == 0.0 and gen.chat_template_kwargs == {"enable_thinking": False}
    assert gen.system_instruction == SYSTEM
    assert {n for n, t in suite.tasks.items() if "env:HF_TOKEN" in t.requires} == {
        "gpqa_diamond",
        "hle",
    }
    assert {n for n, t in suite.tasks.items() if t.skip} == set()
    lcb, sci = suite.tasks["livecodebench"], suite.tasks["scicode"]
    assert (lcb.runner, lcb.code.version, str(lcb.code.start_date), str(lcb.code.end_date)) == (
        "livecodebench",
        "release_v6",
        "2024-08-01",
        "2025-05-01",
    )
    assert (sci.runner, sci.code.split, sci.code.items) == ("scicode", "test", "problems")
    assert sci.code.h5_path and not lcb.requires and not sci.requires  # GPU via the precisions
    tp2 = load_suite(SUITE, "tp2")
    assert tp2.engine.vllm.tensor_parallel_size == 2
    assert tp2.engine.vllm.model_copy(update={"tensor_parallel_size": 1}) == vllm
    assert all(tp2.task_config_hash(t) == suite.task_config_hash(t) for t in suite.tasks)
    stable = load_suite(SUITE, "stable")  # the original conservative settings, server side only
    assert stable.engine.vllm == vllm.model_copy(
        update={"enforce_eager": True, "max_num_seqs": 8, "disable_custom_all_reduce": True}
    )
    assert stable.tasks == suite.tasks and stable.generation == suite.generation
    assert all(stable.task_config_hash(t) == suite.task_config_hash(t) for t in suite.tasks)
    deterministic = load_suite(SUITE, "deterministic")  # batch-invariant mode, server side only
    assert deterministic.engine.env == {**suite.engine.env, "VLLM_BATCH_INVARIANT": "1"}
    assert deterministic.engine.vllm == vllm and deterministic.tasks == suite.tasks
    assert all(deterministic.task_config_hash(t) == suite.task_config_hash(t) for t in suite.tasks)


def test_the_livebench_task():
    """Release 2024-11-25, all six categories from the hub (no questions_dir), LiveBench's own
    scorers (no scorer override), thinking off like the other answer-only tasks."""
    from quantgate.runners.livebench.run import CATEGORIES

    suite = load_suite(SUITE)
    task = suite.tasks["livebench"]
    assert (task.runner, task.release, task.questions_dir, task.scorer) == (
        "livebench",
        "2024-11-25",
        None,
        None,
    )
    assert sorted(task.categories) == sorted(CATEGORIES) and task.tasks == []
    assert task.limit is None and task.repeats == 1 and task.requires == ["module:livebench"]
    assert task.gate.method == "paired" and task.gate.margin == 0.03
    params = suite.gen_kwargs("livebench", suite.generation.seed)
    assert params["chat_template_kwargs"] == {"enable_thinking": False}
    assert params["temperature"] == 0.0 and params["max_gen_toks"] == 4096


def test_a_task_with_data_files_becomes_a_one_task_group_over_local_json():
    suite = load_suite(SUITE)
    task = suite.tasks["math500"].model_copy(
        update={"data_files": {"test": str(FIXTURES / "math500.jsonl")}}
    )
    suite = suite.model_copy(update={"tasks": {**suite.tasks, "math500": task}})
    spec = task_spec(suite, "math500")
    assert spec == {
        "group": "quantgate_qwen3-32b_math500",
        "task": [
            {
                "task": "qwen3_math500",
                "dataset_path": "json",
                "dataset_name": None,
                "dataset_kwargs": {"data_files": {"test": str(FIXTURES / "math500.jsonl")}},
            }
        ],
    }


def test_every_request_fits_the_context_window():
    """prompt + max_tokens > max_model_len is an HTTP 400 from vLLM, which aborts the task:
    keep 4096 tokens for the prompt next to each task's generation budget."""

    suite = load_suite(SUITE)
    for name in suite.tasks:  # every runner sends suite.gen_kwargs' max_gen_toks as max_tokens
        budget = suite.gen_kwargs(name, seed=None)["max_gen_toks"]
        assert budget + 4096 <= suite.engine.vllm.max_model_len, name


# --- MATH-500 ----------------------------------------------------------------------------------

MATH_REPLIES = {
    "\\frac{3}{4} + \\frac{1}{6}": ["$\\boxed{\\frac{11}{12}}$"],
    "polar coordinates": ["\\boxed{(3, \\frac{\\pi}{2})}"],  # \left( \right) in the target
    "Simplify $\\sqrt{72}$": ["\\boxed{6\\sqrt{3}}"],  # wrong
    "positive divisors": ["<think>\nMaybe \\boxed{8}? No: (2+1)(2+1).\n</think>\n\n\\boxed{9}"],
    "largest": ["<think>\n2^10 = 1024 so \\boxed{\\text{(A)}}, but let me check 10^3 and"],  # cut
}


@pytest.mark.slow
def test_math500_prompt_request_and_scores(run):
    result, requests = run("math500", "math500.jsonl", "test", MATH_REPLIES)
    first = next(r for r in requests if "\\frac{3}{4}" in user_prompt(r))
    assert first["messages"] == [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": "What is the value of $\\frac{3}{4} + \\frac{1}{6}$?\n\n"
            "Put your final answer within \\boxed{}.",
        },
    ]
    assert first["temperature"] == 0.0 and first["max_tokens"] == 2048
    assert first["chat_template_kwargs"] == {"enable_thinking": False}
    assert first["stop"] == ["<|im_end|>"] and first["seed"] == 1234
    assert result.scores == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0, "4": 0.0}
    assert result.truncated == 1


# --- AIME 2024 ---------------------------------------------------------------------------------

AIME_ANSWER_ONLY = {
    "divisible by $3$ or by $5$": ["\\boxed{47}", "\\boxed{48}"],  # right, then wrong
    "exactly $12$ positive divisors": ["The answer is 60."],
    "Two are drawn": ["$\\boxed{004}$"],  # leading zeros
    "2^{100}": ["\\boxed{\\frac{1}{2}}"],  # not an integer
}


@pytest.mark.slow
def test_aime24_answer_only_prompt_request_and_repeats(run):
    result, requests = run("aime24", "aime24.jsonl", "train", AIME_ANSWER_ONLY, repeats=2)
    first = next(r for r in requests if "2^{100}" in user_prompt(r))
    assert user_prompt(first) == (
        "Find the remainder when $2^{100}$ is divided by $1000$.\n\n"
        "The answer is an integer from 0 to 999. "
        "Put your final answer within \\boxed{}."
    )
    assert first["messages"][0] == {"role": "system", "content": SYSTEM}
    assert first["chat_template_kwargs"] == {"enable_thinking": False}
    assert (first["temperature"], first["top_p"], first["top_k"]) == (0.7, 0.8, 20)
    assert sorted({r["seed"] for r in requests}) == [1234, 1235]  # one seed per repeat
    assert len(requests) == 8
    assert result.scores == {"0": 0.5, "1": 1.0, "2": 1.0, "3": 0.0}  # mean over the repeats


AIME_THINKING = {
    "divisible by $3$ or by $5$": [
        "<think>\nInclusion-exclusion: 33 + 20 - 6. Is it \\boxed{53}? No, subtract 6: 47.\n"
        "</think>\n\nThere are $47$ such integers, so the answer is $\\boxed{047}$."
    ],
    "exactly $12$ positive divisors": [
        # the opener sits in the prompt's chat template: only </think> in the reply
        "Try 60 = 2^2 * 3 * 5: (2+1)(1+1)(1+1) = 12.\n</think>\n\n**60**"
    ],
    "Two are drawn": [
        "<think>\nP = 6/10 * 5/9 = 1/3, so m + n = \\boxed{4}. Hmm, let me double-check the"
    ],
    "2^{100}": ["<think>\n2^100 mod 8 = 0 and mod 125 ... 376.\n</think>\n\nThe answer is 376."],
}


@pytest.mark.slow
def test_aime24_thinking_request_and_think_blocks(run):
    result, requests = run("aime24_think", "aime24.jsonl", "train", AIME_THINKING, repeats=1)
    body = requests[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["max_tokens"] == 32768
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.6, 0.95, 20)
    assert not any("Question" in s or "Problem" in s for s in body["stop"])
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert result.scores == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0}  # truncated trace: 0
    assert result.truncated == 1


# --- GPQA-Diamond ------------------------------------------------------------------------------


def gpqa_replies() -> dict[str, list[str]]:
    """Right for the first question (two styles by repeat), wrong for the second, and a lone
    letter for the third; letters follow the fixed per-question choice order."""
    docs = rows("gpqa_diamond.jsonl")
    right = ["ABCD"[gpqa_choice_order(d["Question"]).index(0)] for d in docs]
    wrong = next(x for x in "ABCD" if x != right[1])
    return {
        docs[0]["Question"]: [f"The answer is ({right[0]})."],
        docs[1]["Question"]: [
            f"<think>\n(A) or ({right[1]})?\n</think>\n\nThe answer is ({wrong})."
        ],
        docs[2]["Question"].strip(): [f"**{right[2]}**"],
    }


def test_gpqa_choice_order_is_fixed_per_question():
    assert gpqa_choice_order("Which particle?") == gpqa_choice_order("Which particle?")
    orders = {tuple(gpqa_choice_order(f"question {i}")) for i in range(50)}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(orders) > 10


@pytest.mark.slow
def test_gpqa_prompt_request_and_scores(run):
    result, requests = run("gpqa_diamond", "gpqa_diamond.jsonl", "train", gpqa_replies())
    doc = rows("gpqa_diamond.jsonl")[0]
    answers = [
        doc["Correct Answer"],
        doc["Incorrect Answer 1"],
        doc["Incorrect Answer 2"],
        doc["Incorrect Answer 3"],
    ]
    choices = [answers[i] for i in gpqa_choice_order(doc["Question"])]
    expected = (
        "What is the correct answer to this question: "
        "Which particle mediates the electromagnetic interaction?\n\nChoices:\n"
        + "".join(f"({x}) {c}\n" for x, c in zip("ABCD", choices))
        + "\nAnswer with the letter of the correct choice, in the form "
        '"The answer is (X)".'
    )
    body = next(r for r in requests if "Which particle" in user_prompt(r))
    assert user_prompt(body) == expected
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["temperature"] == 0.0 and body["chat_template_kwargs"] == {"enable_thinking": False}
    assert result.scores == {"0": 1.0, "1": 0.0, "2": 1.0}
    # the third row's correct answer has a leading space in the data: cleaned in the prompt
    third = next(r for r in requests if "oxidative" in user_prompt(r))
    assert "Inner mitochondrial membrane\n" in user_prompt(third)
    assert "  Inner" not in user_prompt(third) and ") Inner" in user_prompt(third)


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("The answer is (B).", "B"),
        ("B", "B"),
        ("**C**", "C"),
        ("B) Photon", "B"),
        ("(D)", "D"),
        ("$\\boxed{\\text{(C)}}$", "C"),
        ("**Answer:** (C)", "C"),
        ("The correct answer is **D**", "D"),
        ("<think>\nmaybe (A)? no.\n</think>\n\nThe answer is (D).", "D"),
        ("<think>\nit is (A) for sure, but", ""),  # cut off while thinking
        ("A particle physics answer.", ""),
        ("The answer is Avogadro's number", ""),
    ],
)
def test_choice_letter(reply, letter):
    assert choice_letter(reply) == letter


# --- HLE ----------------------------------------------------------------------------------------

HLE_REPLIES = {
    "smallest prime": ["<think>\n101? Check 7: no.\n</think>\n\nAnswer: 101"],
    "Earth's atmosphere": ["Answer: B. Nitrogen"],
    "\\int_0^1": ["Answer: $\\frac{2}{2}$"],  # equivalent to the target 1
    "Thirty Years' War": ["Answer: Munster"],  # wrong (the target is Osnabrück)
}


@pytest.mark.slow
def test_hle_keeps_text_only_items_and_scores_them(run):
    result, requests = run("hle", "hle.jsonl", "test", HLE_REPLIES)
    assert len(requests) == 4 and not any("image" in user_prompt(r) for r in requests)
    mc = next(r for r in requests if "atmosphere" in user_prompt(r))
    assert user_prompt(mc).endswith(
        "E. Hydrogen\n\nGive the letter of your chosen answer on a "
        'final line of the form "Answer: <letter>".'
    )
    exact = next(r for r in requests if "smallest prime" in user_prompt(r))
    assert user_prompt(exact) == (
        "What is the smallest prime number greater than 100?\n\nGive "
        "your final answer, as short as possible, on a final line of "
        'the form "Answer: <answer>".'
    )
    assert exact["messages"][0] == {"role": "system", "content": SYSTEM}
    assert result.scores == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 0.0}


def test_hle_docs_never_decode_images():
    """cais/hle stores images as Image features: the filter reads only the text columns and the
    image columns are dropped (lm-eval would otherwise decode one per document)."""
    from datasets import Dataset, Features, Image, Value

    from quantgate.tasks.qwen3.utils import hle_docs

    features = Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "image": Value("string"),
            "image_preview": Image(),
            "answer": Value("string"),
            "answer_type": Value("string"),
            "rationale_image": Image(),
        }
    )
    data = Dataset.from_dict(
        {
            "id": ["a", "b", "c", "d"],
            "question": ["q"] * 4,
            "image": ["", "data:image/png;base64,AAAA", "", " "],
            "image_preview": [None] * 4,
            "answer": ["1", "2", "3", "4"],
            "answer_type": ["exactMatch", "exactMatch", "multipleChoice", "freeForm"],
            "rationale_image": [None] * 4,
        },
        features=features,
    )
    kept = hle_docs(data)
    assert kept["id"] == ["a", "c"]
    assert "image_preview" not in kept.column_names and "rationale_image" not in kept.column_names


@pytest.mark.parametrize(
    ("reply", "target", "score"),
    [
        ("Answer: 101", "101", 1.0),
        ("The answer is:\nAnswer: **Osnabruck.**", "Osnabrück", 1.0),  # accents, emphasis, period
        ("Answer: Nitrogen", "B", 0.0),  # multiple choice needs the letter
        ("Answer: \\boxed{B}", "B", 1.0),
        ("Answer: Argon", "A", 0.0),
        ("Answer: 1.0", "1", 1.0),  # math-verify for mathematical targets
        ("Answer: Sirap", "Paris", 0.0),  # no math-verify for words (it would compare products)
        ("<think>\nAnswer: 101", "101", 0.0),  # cut off while thinking
        ("101", "101", 1.0),  # no label: the last line
    ],
)
def test_hle_match(reply, target, score):
    assert hle_match([target], [reply]) == score


def test_stated_answer_and_normalisation():
    assert stated_answer("Explanation: ...\nAnswer:\n  $x^2$\nConfidence: 80%") == "$x^2$"
    assert stated_answer("so \\boxed{42} it is") == "42"
    assert normalise_answer("\\text{The Cat}.") == "the cat"


# --- MMLU-Pro (lm-eval's shipped task) ----------------------------------------------------------


def test_mmlu_pro_extracts_the_answer_format_the_instruction_asks_for():
    """mmlu_pro's custom-extract filter only reads "answer is (X)": the format its prompt asks
    for and the suite's answer-only instruction keeps ("in the format the question asks for")."""
    import re

    import lm_eval

    template = Path(lm_eval.__file__).parent / "tasks" / "mmlu_pro" / "_default_template_yaml"
    loader = type("L", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda loader, node: None)
    config = yaml.load(template.read_text(), Loader=loader)  # noqa: S506 - a SafeLoader
    pattern = config["filter_list"][0]["filter"][0]["regex_pattern"]
    assert re.search(pattern, "The answer is (C).").group(1) == "C"
    assert re.search(pattern, "the answer is J").group(1) == "J"
