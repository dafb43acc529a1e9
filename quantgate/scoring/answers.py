"""Answer extraction for reasoning models.

Qwen3-style outputs wrap their reasoning in ``<think>…</think>`` (the opening tag may sit in the
prompt, so only ``</think>`` appears in the output). The final answer is what follows the last
``</think>``; a ``<think>`` that never closes means the generation was cut off mid-reasoning and
must never be credited::

    >>> extract_final_integer(
    ...     "<think>maybe 5? no, 12+5=17</think>\\nThe answer is $\\\\boxed{017}$."
    ... )
    17
    >>> integer_match("<think>so \\\\boxed{17} but let me check", "17")  # truncated
    0.0
"""

from __future__ import annotations

import re
import threading

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

_CLOSED_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ANSWER_PHRASE = re.compile(
    r"answer\s*(?:is|:|=)\s*(?:[:=]\s*)?(?:\*\*|\$|\\\(|\\\[|\\boxed\{|\\text\{|\s)*"
    r"(?P<num>[-+\u2212]?\s*\d[\d,]*(?:\.\d+)?)",
    re.IGNORECASE,
)
# A number: thousands groups (1,000) or plain digits, an optional decimal part; '.' at a
# sentence end is not a decimal part.
_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_LATEX_NOISE = re.compile(
    r"\\(?:text|mathrm|mathbf|textbf|mbox)\{([^{}]*)\}|\\[,;!: ]|\{,\}|"
    r"\\left|\\right|\^\{?\\circ\}?"
)


def strip_think(text: str) -> str:
    """The text with reasoning removed: closed ``<think>`` blocks, anything before a ``</think>``
    that has no opener (the opener was in the prompt), and an unclosed ``<think>`` to the end."""
    last_close = text.rfind(THINK_CLOSE)
    if last_close != -1 and THINK_OPEN not in text[:last_close]:
        text = text[last_close + len(THINK_CLOSE) :]
    text = _CLOSED_BLOCK.sub("", text)
    text = text[text.rfind(THINK_CLOSE) + len(THINK_CLOSE) :] if THINK_CLOSE in text else text
    opened = text.find(THINK_OPEN)
    if opened != -1:
        text = text[:opened]
    return text.strip()


def is_truncated(text: str) -> bool:
    """True when a ``<think>`` block is still open at the end: the model was cut off."""
    return text.rfind(THINK_OPEN) > text.rfind(THINK_CLOSE)


def final_answer_text(text: str, *, prefer_final: bool = True) -> str:
    """The part of ``text`` that holds the answer.

    With ``prefer_final`` the text after the last ``</think>``; otherwise, or when that is empty,
    the text with think blocks removed; when that is empty too, the raw text.
    """
    if prefer_final and THINK_CLOSE in text:
        after = text[text.rfind(THINK_CLOSE) + len(THINK_CLOSE) :].strip()
        if after and not is_truncated(after):
            return after
    stripped = strip_think(text)
    return stripped if stripped else text.strip()


def extract_final_integer(text: str, *, prefer_final: bool = True) -> int | None:
    """The integer a response gives as its final answer (AIME style), or None.

    Order: the last ``\\boxed{…}``, then the last "answer is N" phrase, then the last number.
    Leading zeros, thousands separators, signs, ``$…$`` and trailing punctuation are handled;
    a final answer that is not an integer (``\\boxed{\\frac{1}{2}}``, ``3.5``) gives None.
    """
    answer = final_answer_text(text, prefer_final=prefer_final)
    boxed = last_boxed(answer)
    if boxed is not None:
        return _integer_in(boxed)
    phrases = list(_ANSWER_PHRASE.finditer(answer))
    if phrases:
        return _to_integer(phrases[-1].group("num"))
    numbers = _NUMBER.findall(_LATEX_NOISE.sub(r"\1", answer))
    return _to_integer(numbers[-1]) if numbers else None


def integer_match(response: str, target: str | int, *, prefer_final: bool = True) -> float:
    """1.0 when the response's final integer equals ``int(target)``; truncated responses score 0.

    ``integer_match("…</think> The answer is \\\\boxed{033}.", "33")`` -> 1.0
    """
    expected = _to_integer(str(target).strip())
    if expected is None:
        raise ValueError(f"integer_match needs an integer target, got {target!r}")
    if is_truncated(response):
        return 0.0
    return 1.0 if extract_final_integer(response, prefer_final=prefer_final) == expected else 0.0


def math_equal(prediction: str, gold: str) -> bool:
    """Mathematical equivalence of the prediction's final answer and ``gold``, by math-verify.

    Think blocks are stripped first and an unclosed think block is never credited.
    ``math_equal("</think> so $x = \\\\frac{2}{4}$", "\\\\frac{1}{2}")`` -> True
    """
    from math_verify import parse, verify  # heavy (sympy): imported on first use

    if is_truncated(prediction):
        return False
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_text = gold if ("$" in gold or "\\boxed" in gold) else f"${gold}$"
    gold_parsed = parse(gold_text, parsing_timeout=timeout)
    pred_parsed = parse(final_answer_text(prediction), parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` / ``\\fbox{…}`` (braces matched), or ``\\boxed 5``."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start == -1:
        return None
    rest = text[start + (5 if text.startswith("\\fbox", start) else 6) :]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        return rest.strip().split()[0].rstrip("$.")
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return rest[1:i]
    return None  # unbalanced: the box never closed


def _integer_in(content: str) -> int | None:
    """The integer a boxed answer states: ``033`` -> 33, ``x = 17`` -> 17, ``1{,}000`` -> 1000."""
    text = _LATEX_NOISE.sub(r"\1", content).replace("\\$", "").replace("$", "").strip()
    text = text.rsplit("=", 1)[-1].strip()
    match = re.fullmatch(r"([-+\u2212]?\s*[\d,]*\d(?:\.\d+)?)\s*[A-Za-z%°.\s]*", text)
    return _to_integer(match.group(1)) if match else None


def _to_integer(token: str) -> int | None:
    token = token.replace("\u2212", "-").replace(" ", "").rstrip(".")
    if "," in token:
        if not re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
            return None
        token = token.replace(",", "")
    try:
        value = float(token)
    except ValueError:
        return None
    return int(value) if value.is_integer() and abs(value) < 1e15 else None
