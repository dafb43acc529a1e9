"""Answer extraction on realistic reasoning-model outputs (Qwen3-style think traces)."""

import pytest

from quantgate.scoring.answers import (
    extract_final_integer,
    final_answer_text,
    integer_match,
    is_truncated,
    last_boxed,
    math_equal,
    strip_think,
)

QWEN3_AIME = (
    "<think>\nOkay, let's see. We need the number of ordered pairs. If I try x = 5 I get "
    "\\boxed{5}? No wait, that ignores the symmetric case. Counting again: 12 + 21 = 33.\n"
    "</think>\n\nThere are $33$ ordered pairs, so the answer is $\\boxed{033}$."
)
# enable_thinking=True: the chat template puts <think> in the prompt, the output has only </think>.
OPENER_IN_PROMPT = "Let me compute 7 * 6 = 42, minus 1 is 41.\n</think>\n\nThe answer is 41."
TRUNCATED = "<think>\nFirst, 2^10 = 1024. So maybe \\boxed{24}. Hmm, but we still need to subtract"
ANSWER_ONLY = "The answer is 204."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (QWEN3_AIME, "There are $33$ ordered pairs, so the answer is $\\boxed{033}$."),
        (OPENER_IN_PROMPT, "The answer is 41."),
        ("Intro. <think>a</think> middle <think>b</think> end", "Intro.  middle  end"),
        (TRUNCATED, ""),  # everything after an unclosed <think> is reasoning
        ("Answer first. <think>then thoughts that never end", "Answer first."),
        (ANSWER_ONLY, ANSWER_ONLY),
    ],
)
def test_strip_think(text, expected):
    assert strip_think(text) == expected


@pytest.mark.parametrize(
    ("text", "truncated"),
    [
        (QWEN3_AIME, False),
        (OPENER_IN_PROMPT, False),
        (TRUNCATED, True),
        (ANSWER_ONLY, False),
        ("<think>a</think> ok <think>again", True),
        ("<think></think>17", False),
    ],
)
def test_is_truncated(text, truncated):
    assert is_truncated(text) is truncated


def test_final_answer_text_prefers_text_after_last_think_close():
    text = "Preamble 12. <think>try 5</think> interim 7 <think>no, 9</think>\nFinal: 9"
    assert final_answer_text(text) == "Final: 9"
    assert final_answer_text(text, prefer_final=False) == "Preamble 12.  interim 7 \nFinal: 9"


def test_final_answer_text_falls_back_when_final_part_is_empty():
    assert final_answer_text("Answer 5 <think>checking</think>   ") == "Answer 5"
    assert final_answer_text("<think>only thoughts</think>") == "<think>only thoughts</think>"
    assert final_answer_text(TRUNCATED) == TRUNCATED.strip()  # raw text: callers check truncation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (QWEN3_AIME, 33),  # leading zero in the box; the \boxed{5} in the reasoning is ignored
        (OPENER_IN_PROMPT, 41),
        ("The final answer is $\\boxed{1{,}000}$.", 1000),
        ("So the answer is 1,000.", 1000),
        ("The answer is: **-12**", -12),
        ("Thus $x = \u221217$.", -17),  # unicode minus
        ("Answer: $\\boxed{x = 250}$", 250),
        ("The total is \\boxed{17 \\text{ meters}}.", 17),
        ("We find $\\boxed{90^\\circ}$", 90),
        ("The probability is $\\boxed{\\frac{1}{2}}$.", None),  # not an integer answer
        ("we get 12 and then 45.", 45),  # last integer
        ("The average is 3.5", None),  # the last number is not an integer
        ("The answer is 17.0", 17),
        ("I cannot determine it.", None),
        ("\\boxed{+7}", 7),
        ("\\fbox{204}", 204),
        ("so \\boxed 5 is it", 5),
        ("1, 2, 3", 3),
        ("Result: $\\$1,250$", 1250),
    ],
)
def test_extract_final_integer(text, expected):
    assert extract_final_integer(text) == expected


def test_extract_final_integer_prefer_final_off_reads_the_whole_stripped_text():
    text = "The answer is 12. <think>hmm</think> Also 7 is prime."
    assert extract_final_integer(text) == 7
    assert extract_final_integer(text, prefer_final=False) == 12  # the phrase beats the last int


def test_aime_regression_exact_match_zero():
    """The hand-run reports scored 0/30 because of LaTeX and think text; these all match."""
    responses = [
        QWEN3_AIME,
        "<think>\n...\n</think>\n\n**Final Answer**\n\\[\n\\boxed{33}\n\\]",
        "$33$",
        "The answer is $033$.",
    ]
    assert [integer_match(r, "33") for r in responses] == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("response", "target", "score"),
    [
        (QWEN3_AIME, "33", 1.0),
        (QWEN3_AIME, 33, 1.0),
        (QWEN3_AIME, "033", 1.0),
        (QWEN3_AIME, "34", 0.0),
        (TRUNCATED, "24", 0.0),  # truncated: never credited even though \boxed{24} is there
        ("The answer is 41.", "41", 1.0),
        ("", "41", 0.0),
    ],
)
def test_integer_match(response, target, score):
    assert integer_match(response, target) == score


def test_integer_match_rejects_non_integer_targets():
    with pytest.raises(ValueError, match="integer target"):
        integer_match("17", "1/2")


@pytest.mark.parametrize(
    ("prediction", "gold", "equal"),
    [
        ("<think>maybe \\boxed{5}? no.</think>\nThe final answer is $\\boxed{17}$.", "17", True),
        ("<think>I think it is \\boxed{17} but let me check", "17", False),  # truncated
        ("</think> So $x = \\frac{2}{4}$.", "\\frac{1}{2}", True),  # LaTeX fraction, reduced
        ("The answer is $\\boxed{\\dfrac{3}{4}}$", "0.75", True),
        ("Therefore the area is $\\boxed{12\\sqrt{2}}$.", "12\\sqrt{2}", True),
        ("Therefore the area is $\\boxed{12\\sqrt{3}}$.", "12\\sqrt{2}", False),
        ("The solutions are $\\boxed{x=2}$", "2", True),
        ("We get 12 and then 45", "17", False),
        ("The final answer is $\\boxed{033}$", "33", True),
        ("The total cost is $\\boxed{5 \\text{ dollars}}$", "5", True),  # units
        ("no answer here", "\\frac{1}{2}", False),
    ],
)
def test_math_equal(prediction, gold, equal):
    assert math_equal(prediction, gold) is equal


def test_math_equal_in_a_worker_thread():
    """math-verify's signal.alarm timeouts only work in the main thread; we must not crash."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(math_equal, "</think> $\\frac{2}{4}$", "\\frac{1}{2}").result() is True


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}", "x^{2}"),
        ("\\boxed{unclosed", None),
        ("nothing", None),
    ],
)
def test_last_boxed(text, content):
    assert last_boxed(text) == content
