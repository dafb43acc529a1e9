"""Loading suite files: YAML without duplicate keys, profiles, and errors that name the file,
the key path, what was found and what is expected (the schema is :mod:`quantgate.config`).

    >>> suite = load_suite("tests/accuracy/suites/tiny.yaml")      # doctest: +SKIP
    >>> suites = discover_suites("tests/accuracy/suites", profile="tp2")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from quantgate.config import Suite, SuiteError

# --- loading -----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of duplicate keys; a suite must not."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise SuiteError(
                f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                f"(first on line {seen[key]}); remove one of them"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_suite(path: str | Path, profile: str | None = None) -> Suite:
    """Read and validate one suite file; its name is the file's stem. ``profile`` applies one of
    the suite's ``profiles`` (e.g. ``tp2``: the same suite on two GPUs) over its keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); a suite "
            "file is YAML text: fix or remove the file"
        ) from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - safe subclass
    except (yaml.YAMLError, SuiteError) as exc:
        raise SuiteError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: found {type(data).__name__}; expected a mapping of suite keys")
    if "name" in data:
        raise SuiteError(
            f"{path}: name: the suite's name is its file name ({path.stem!r}); remove the key"
        )
    if profile is not None:
        profiles = data.get("profiles") or {}
        if profile not in profiles:
            raise SuiteError(
                f"{path}: profiles.{profile}: no such profile; available: "
                f"{', '.join(profiles) or 'none'}"
            )
        data = _merged(data, profiles[profile])
    try:
        return Suite(**data, name=path.stem, path=path.resolve())
    except ValidationError as exc:
        raise SuiteError(_describe(path, exc)) from None


def _merged(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in, mappings recursively."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merged(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def discover_suites(directory: str | Path, profile: str | None = None) -> dict[str, Suite]:
    """All ``*.yaml`` suites of a directory, by name (``profile`` where a suite defines it)."""
    suites = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        suite = load_suite(path)
        suites[path.stem] = load_suite(path, profile) if profile in suite.profiles else suite
    return suites


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        found = err.get("input")
        shown = "nothing" if err["type"] == "missing" else f"{found!r} ({type(found).__name__})"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key; check its spelling or remove it")
            continue
        expected = _EXPECTED.get(
            err["type"], err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        )
        lines.append(f"  {where}: found {shown}; expected {expected}")
    count = len(lines)
    return f"{path}: {count} problem{'s' * (count != 1)}\n" + "\n".join(lines)


_EXPECTED = {
    "missing": "this key to be set",
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "an integer",
    "int_type": "an integer",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "list_type": "a list",
}
