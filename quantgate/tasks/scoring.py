"""lm-eval metrics and filters for quantgate's task YAMLs (``!function ../scoring.<name>``).

Thin adapters: the scoring itself lives in :mod:`quantgate.scoring.answers`.
"""

import re
import unicodedata

from quantgate.scoring import answers


def integer_match(references: list[str], predictions: list[str]) -> float:
    """AIME-style: the response's final integer (after ``</think>``) equals the target."""
    return answers.integer_match(predictions[0], references[0], prefer_final=True)


def math_verify_match(references: list[str], predictions: list[str]) -> float:
    """MATH-style: equivalence by math-verify; an unclosed think block scores 0."""
    return float(answers.math_equal(predictions[0], references[0]))


def final_answer_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Keep only each response's final answer text (think blocks removed, whitespace trimmed)."""
    return [[answers.final_answer_text(r) for r in per_doc] for per_doc in resps]


# --- multiple choice and short answers (the Qwen3 suite: GPQA-Diamond, HLE) ---------------------

_LETTER_AFTER_ANSWER = re.compile(
    r"(?i:answer)\s*(?:(?i:is)\s*)?[:\-]?\s*"
    r"(?:\*\*|__|\$|\\text(?:bf)?\{|\\mathrm\{|\s)*\(?([A-Z])\)?(?![A-Za-z0-9])"
)
_LETTER_IN_PARENS = re.compile(r"\(([A-Z])\)")
_LEADING_LETTER = re.compile(r"^[\s*_$]*\(?([A-Z])\)?(?=$|[.):*_$]|\s*$)")
_ANSWER_LABEL = re.compile(r"(?i)\banswer\s*(?:\*\*|__)?\s*[:\uff1a]")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\{([^{}]*)\}")


def choice_letter(text: str) -> str:
    """The choice letter a response gives (``""`` if none, or if it was cut off while thinking).

    Read from the text after the last ``</think>``: the last ``\\boxed{X}``, else the last
    "answer is (X)" / "Answer: X" phrase, else the last "(X)", else a reply that starts with the
    letter ("B", "**B**", "B) Photon").
    """
    if answers.is_truncated(text):
        return ""
    final = answers.final_answer_text(text)
    boxed = answers.last_boxed(final)
    if boxed is not None:
        letter = _LEADING_LETTER.match(_LATEX_WRAPPER.sub(r"\1", boxed))
        if letter:
            return letter.group(1)
    for pattern in (_LETTER_AFTER_ANSWER, _LETTER_IN_PARENS):
        found = pattern.findall(final)
        if found:
            return found[-1]
    letter = _LEADING_LETTER.match(final)
    return letter.group(1) if letter else ""


def choice_letter_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval filter: each response -> its choice letter (:func:`choice_letter`)."""
    return [[choice_letter(r) for r in per_doc] for per_doc in resps]


def stated_answer(text: str) -> str:
    """The answer a response states: after the last "Answer:" label (its first non-empty line),
    else the last ``\\boxed{}``, else the last non-empty line; think blocks removed first."""
    final = answers.final_answer_text(text)
    labels = list(_ANSWER_LABEL.finditer(final))
    if labels:
        rest = final[labels[-1].end() :]
        lines = [line.strip() for line in rest.splitlines() if line.strip()]
        if lines:
            return lines[0]
    boxed = answers.last_boxed(final)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in final.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def normalise_answer(text: str) -> str:
    """Case, accents, spaces, ``$``, ``\\text{}``, ``\\boxed{}``, markdown emphasis, quotes and a
    trailing period removed: ``"**Osnabrück.**"`` -> ``"osnabruck"``."""
    boxed = answers.last_boxed(text)
    text = boxed if boxed is not None else text
    for _ in range(3):  # nested wrappers
        text = _LATEX_WRAPPER.sub(r"\1", text)
    text = text.replace("\\left", "").replace("\\right", "").replace("$", "")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"\*\*|__|[`\"\u201c\u201d\u2018\u2019]", "", text)
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    return text.casefold()


def hle_match(references: list[str], predictions: list[str]) -> float:
    """Humanity's Last Exam without a judge model: a single-letter target (multiple choice) must
    be the letter the response states; any other target must equal the stated answer after
    :func:`normalise_answer`, or, when it is mathematical (digits or LaTeX), be equivalent by
    math-verify. A response cut off while thinking scores 0."""
    response, target = predictions[0], str(references[0]).strip()
    if answers.is_truncated(response):
        return 0.0
    stated = stated_answer(response)
    if re.fullmatch(r"[A-Z]", target):
        letter = _LEADING_LETTER.match(
            _LATEX_WRAPPER.sub(r"\1", answers.last_boxed(stated) or stated)
        )
        return float(bool(letter) and letter.group(1) == target)
    if stated and normalise_answer(stated) == normalise_answer(target):
        return 1.0
    if stated and re.search(r"[\d\\^]", target):
        return float(answers.math_equal(stated, target))
    return 0.0


# --- LiveBench-format questions of the tiny suite (tests/fixtures/livebench/tiny) ---------------


def livebench_tiny_score(question: dict, answer: str) -> float:
    """A scorer for quantgate's LiveBench runner (``scorer:`` in a suite) where LiveBench's own
    do not apply: the tiny model's questions. An integer ground truth is matched like
    ``integer_match``, a word like ``tiny_words`` (case, spaces and a final period ignored)."""
    truth = str(question["ground_truth"]).strip()
    if re.fullmatch(r"-?\d+", truth):
        return answers.integer_match(answer, truth, prefer_final=True)
    return float(normalise_answer(answers.final_answer_text(answer)) == normalise_answer(truth))
