"""Read and write JSON Lines files with errors that say where and how to fix.

Usage::

    rows = read_jsonl("judgments.jsonl")                # [(line_number, {...}), ...]
    write_jsonl("copy.jsonl", [obj for _, obj in rows])  # atomic: temp file + os.replace
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonlError", "atomic_write_text", "read_jsonl", "require_field", "write_jsonl"]

_FIX_HINT = "each non-blank line must hold exactly one JSON object; fix or delete that line"
_ROW_HINT = "fix this row, or regenerate the file"
_MISSING = object()


class JsonlError(ValueError):
    """A JSON Lines file holds a line that is not what it should be.

    ``str(err)`` reads ``"<path>:<line>: <reason> (<hint>)"``; the parts are kept as
    ``err.path``, ``err.line``, ``err.reason`` and ``err.hint``.
    """

    def __init__(
        self, path: str | os.PathLike[str], line: int, reason: str, hint: str = _FIX_HINT
    ) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.hint = hint
        super().__init__(f"{self.path}:{line}: {reason} ({hint})")


def read_jsonl(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(line_number, object)`` for each non-blank line of ``path`` (1-based numbers).

    Blank and whitespace-only lines are skipped; a line that is not valid UTF-8, not valid
    JSON or not a JSON object raises :class:`JsonlError` naming the file and the line.

    Usage: ``for line_number, row in read_jsonl("question.jsonl"): ...``
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            text = _decode_line(path, line_number, raw)
            if not text.strip():
                continue
            rows.append((line_number, _parse_object(path, line_number, text)))
    return rows


def _decode_line(path: str | os.PathLike[str], line_number: int, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonlError(
            path,
            line_number,
            f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
            "re-save the file as UTF-8",
        ) from exc
    return text.removeprefix("\ufeff") if line_number == 1 else text


def _parse_object(path: str | os.PathLike[str], line_number: int, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonlError(
            path, line_number, f"malformed JSON: {exc.msg} at column {exc.colno}"
        ) from exc
    if not isinstance(obj, dict):
        raise JsonlError(
            path, line_number, f"expected a JSON object, found {type(obj).__name__} {_preview(obj)}"
        )
    return obj


def read_jsonl_lenient(path: str | os.PathLike[str], key: str) -> dict[Any, dict[str, Any]]:
    """``row[key] -> row`` for a cache file the project appends to: a missing or unreadable
    file is empty, and a line that is not a JSON object with ``key`` (a torn last line after a
    crash) is skipped; a later row of the same key wins. For our own caches only: data files
    use :func:`read_jsonl`, which names every bad line."""
    rows: dict[Any, dict[str, Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return rows
    for line in lines:
        try:
            row = json.loads(line)
            rows[row[key]] = row
        except (ValueError, TypeError, KeyError):
            continue
    return rows


def require_field(
    path: str | os.PathLike[str],
    line: int,
    row: Mapping[str, Any],
    name: str,
    is_valid: Callable[[Any], bool],
    expected: str,
    *,
    required: bool = True,
    hint: str = _ROW_HINT,
) -> Any:
    """Return ``row[name]`` if ``is_valid`` accepts it, else raise :class:`JsonlError` naming the
    field.

    With ``required=False`` a missing or null field gives ``None``.

        >>> require_field(
        ...     "j.jsonl", 3, {"score": 0.5}, "score", lambda v: isinstance(v, float), "a number"
        ... )
        0.5
        >>> try:
        ...     require_field(
        ...         "j.jsonl", 3, {"score": "1"}, "score", lambda v: isinstance(v, float), "a number"
        ...     )
        ... except JsonlError as err:
        ...     print(err)
        j.jsonl:3: field 'score': found "1" (str), expected a number (fix this row, or regenerate the file)
    """  # noqa: E501
    value = row.get(name, _MISSING)
    if (value is _MISSING or value is None) and not required:
        return None
    if value is not _MISSING and is_valid(value):
        return value
    found = (
        "nothing (field missing)"
        if value is _MISSING
        else f"{_preview(value)} ({type(value).__name__})"
    )
    raise JsonlError(path, line, f"field '{name}': found {found}, expected {expected}", hint)


def _preview(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write one JSON object per line to ``path`` atomically; return the number of rows.

    Nothing is replaced unless every row serialises: a failure leaves an existing file as it was.

    Usage: ``write_jsonl("judgments.jsonl", [{"question_id": "ab12", "score": 1}])`` returns 1.
    """
    lines = [json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same folder and
    ``os.replace``.

    Readers see either the old file or the complete new one. The new file gets the usual
    permissions (0o666 minus the umask). The folder must exist.

    Usage: ``atomic_write_text("summary.json", json.dumps(summary) + "\\n")``
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
