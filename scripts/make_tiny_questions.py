"""Generate the question sets the embedded tiny model is trained on and gated with.

Writes two JSON-lines files, one object per line, ``{"id": ..., "question": ..., "answer": ...}``:

* ``arith.jsonl`` -- 150 small integer arithmetic questions (``+``, ``-``, ``*``; some results are
  negative), e.g. ``{"id": "arith-000", "question": "What is 23 + 48?", "answer": "71"}``.
* ``words.jsonl`` -- 100 questions with a one-word answer (opposites, plurals, next weekday, next
  month), e.g.
  ``{"id": "words-000", "question": "What is the opposite of hot?", "answer": "cold"}``.

The output is a pure function of the seed, so the committed files can be rebuilt byte for byte::

    python scripts/make_tiny_questions.py                      # writes tests/fixtures/tiny/*.jsonl
    python scripts/make_tiny_questions.py --out-dir /tmp/q --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny"

ARITH_COUNTS = {"+": 55, "-": 55, "*": 40}
DOC_EXAMPLE = (23, "+", 48)

OPPOSITES = [
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("fast", "slow"),
    ("old", "new"),
    ("happy", "sad"),
    ("light", "dark"),
    ("open", "closed"),
    ("early", "late"),
    ("full", "empty"),
    ("hard", "soft"),
    ("high", "low"),
    ("left", "right"),
    ("long", "short"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("wet", "dry"),
    ("young", "old"),
    ("true", "false"),
    ("win", "lose"),
    ("buy", "sell"),
    ("push", "pull"),
    ("north", "south"),
    ("east", "west"),
    ("day", "night"),
    ("inside", "outside"),
    ("thick", "thin"),
    ("loud", "quiet"),
    ("clean", "dirty"),
    ("first", "last"),
]
PLURALS = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("box", "boxes"),
    ("child", "children"),
    ("mouse", "mice"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("man", "men"),
    ("woman", "women"),
    ("city", "cities"),
    ("baby", "babies"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("wolf", "wolves"),
    ("goose", "geese"),
    ("person", "people"),
    ("bus", "buses"),
    ("glass", "glasses"),
    ("church", "churches"),
    ("potato", "potatoes"),
    ("sheep", "sheep"),
    ("fish", "fish"),
    ("ox", "oxen"),
    ("cactus", "cacti"),
    ("house", "houses"),
    ("book", "books"),
    ("tree", "trees"),
    ("story", "stories"),
    ("wife", "wives"),
    ("life", "lives"),
    ("hero", "heroes"),
    ("dish", "dishes"),
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def make_arith_questions(rng: random.Random) -> list[dict[str, str]]:
    """Return 150 distinct arithmetic questions with integer answers (many differences are
    negative).

    ``What is 23 + 48?`` (the example used in the docs) is always among them.
    """
    triples: list[tuple[int, str, int]] = [DOC_EXAMPLE]
    seen: set[tuple[int, str, int]] = {DOC_EXAMPLE}
    for op, count in ARITH_COUNTS.items():
        made = 1 if op == DOC_EXAMPLE[1] else 0
        while made < count:
            if op == "*":
                left, right = rng.randint(2, 12), rng.randint(2, 12)
            else:
                left, right = rng.randint(1, 99), rng.randint(1, 99)
            if (left, op, right) in seen:
                continue
            seen.add((left, op, right))
            triples.append((left, op, right))
            made += 1
    rng.shuffle(triples)
    items = []
    for index, (left, op, right) in enumerate(triples):
        value = left + right if op == "+" else left - right if op == "-" else left * right
        items.append(
            {
                "id": f"arith-{index:03d}",
                "question": f"What is {left} {op} {right}?",
                "answer": str(value),
            }
        )
    return items


def make_word_questions(rng: random.Random) -> list[dict[str, str]]:
    """Return 100 distinct questions whose answer is a single word."""
    pairs: list[tuple[str, str]] = []
    for word, opposite in OPPOSITES:
        pairs.append((f"What is the opposite of {word}?", opposite))
    # Reverse direction for a subset, skipping words whose reverse would be ambiguous ("old" has two
    # opposites).
    for word, opposite in OPPOSITES[:20]:
        if opposite not in {"old"}:
            pairs.append((f"What is the opposite of {opposite}?", word))
    for word, plural in PLURALS:
        pairs.append((f"What is the plural of {word}?", plural))
    for index, day in enumerate(WEEKDAYS):
        pairs.append((f"What day comes after {day}?", WEEKDAYS[(index + 1) % 7]))
    for index, month in enumerate(MONTHS):
        pairs.append((f"What month comes after {month}?", MONTHS[(index + 1) % 12]))
    questions = [question for question, _ in pairs]
    assert len(questions) == len(set(questions)), "duplicate word question"
    rng.shuffle(pairs)
    pairs = pairs[:100]
    return [
        {"id": f"words-{index:03d}", "question": q, "answer": a}
        for index, (q, a) in enumerate(pairs)
    ]


def write_jsonl(path: Path, items: list[dict[str, str]]) -> None:
    """Write ``items`` as JSON lines (ASCII, one object per line, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    arith = make_arith_questions(random.Random(args.seed))
    words = make_word_questions(random.Random(args.seed + 1))
    write_jsonl(args.out_dir / "arith.jsonl", arith)
    write_jsonl(args.out_dir / "words.jsonl", words)
    print(f"wrote {len(arith)} arith and {len(words)} word questions to {args.out_dir}")


if __name__ == "__main__":
    main()
