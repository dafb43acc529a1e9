"""Dataset preparation for the Qwen3 task YAMLs (``process_docs: !function utils.<name>``).

Scoring lives in :mod:`quantgate.tasks.scoring`; this module only shapes documents.
"""

from __future__ import annotations

import hashlib
import random

LETTERS = "ABCD"


def _clean(text: str | None) -> str:
    """GPQA's own cleanup (lm-eval's gpqa utils): strip, " [title]" -> ". ", no double spaces."""
    if text is None:
        return " "
    return text.strip().replace(" [title]", ". ").replace("  ", " ")


def gpqa_choice_order(question: str) -> list[int]:
    """A fixed permutation of GPQA's four answers for one question, seeded by the question's
    text: the same prompt for every precision, run, machine and lm-eval version (lm-eval's own
    GPQA tasks shuffle with the global ``random`` state)."""
    seed = int(hashlib.sha256(question.encode()).hexdigest()[:16], 16)
    order = [0, 1, 2, 3]
    random.Random(seed).shuffle(order)
    return order


def gpqa_docs(dataset):
    """GPQA rows -> ``choice1..4`` in a fixed per-question order and the correct ``answer``
    letter (index 0 of the unshuffled list is the correct answer)."""

    def one(doc: dict) -> dict:
        answers = [
            _clean(doc["Correct Answer"]),
            _clean(doc["Incorrect Answer 1"]),
            _clean(doc["Incorrect Answer 2"]),
            _clean(doc["Incorrect Answer 3"]),
        ]
        order = gpqa_choice_order(doc["Question"])
        choices = [answers[i] for i in order]
        return {
            "choice1": choices[0],
            "choice2": choices[1],
            "choice3": choices[2],
            "choice4": choices[3],
            "answer": LETTERS[order.index(0)],
        }

    return dataset.map(one)


HLE_ANSWER_TYPES = ("exactMatch", "multipleChoice")


def hle_docs(dataset):
    """Humanity's Last Exam without the items that need an image: text-only questions (empty
    ``image`` field) with an exact-match or multiple-choice answer. The filter reads only those
    two columns, and the image columns are dropped, so no image is ever decoded (nor needs
    Pillow) and none travels in lm-eval's per-sample records."""
    kept = dataset.filter(
        lambda image, answer_type: not (image or "").strip() and answer_type in HLE_ANSWER_TYPES,
        input_columns=["image", "answer_type"],
    )
    return kept.remove_columns(
        [c for c in ("image_preview", "rationale_image") if c in kept.column_names]
    )
