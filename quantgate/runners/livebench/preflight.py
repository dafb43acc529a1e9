"""Before any generation: can LiveBench's scorers for these questions run here?

    preflight(questions)   # raises LiveBenchNotInstalled (skip) or PreflightError (one message)

Each selected question is routed to its scorer (:func:`quantgate.runners.livebench.judge.route`);
every Python module, parser and data file those scorers need is checked without importing
anything that would try a download (LiveBench's IFBench module fetches spaCy's ``en_core_web_sm``
and NLTK's ``punkt`` when it is imported), then the scorer modules themselves are imported.
What is missing comes back as ONE message that lists what to install, before a GPU minute is spent.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quantgate.runners.livebench.judge import ROUTES, UnsupportedTask, route
from quantgate.runs import NotRunnable, RunError

LIVEBENCH_COMMIT = "b0fb577be60ea5ba6e3e677a84af127c893af0ef"  # 2026-08-22, read for this runner
INSTALL = (
    f'pip install "livebench @ git+https://github.com/LiveBench/LiveBench.git@{LIVEBENCH_COMMIT}"'
)


class LiveBenchNotInstalled(NotRunnable):
    """``livebench`` is not importable: the LiveBench cases are skipped with the install command."""


class PreflightError(RunError):
    """Something the selected scorers need is missing; the message lists what to install (the
    case fails)."""


@dataclass(frozen=True)
class Need:
    what: str  # as printed
    fix: str  # the command that installs it
    modules: tuple[str, ...] = ()  # all importable ...
    alternatives: tuple[tuple[str, ...], ...] = ()  # ... and one of these groups importable
    nltk: str | None = None  # an NLTK data resource
    spacy_model: str | None = None

    def met(self) -> bool:
        if not all(_importable(m) for m in self.modules):
            return False
        if self.alternatives and not any(
            all(_importable(m) for m in group) for group in self.alternatives
        ):
            return False
        if self.nltk is not None and not _nltk_has(self.nltk):
            return False
        return self.spacy_model is None or _importable(self.spacy_model)


def _module(name: str, pip: str | None = None) -> Need:
    return Need(f"Python module {name!r}", f"pip install {pip or name}", modules=(name,))


def _nltk(resource: str, package: str) -> Need:
    return Need(
        f"NLTK data {resource!r}",
        f"python -m nltk.downloader {package}",
        modules=("nltk",),
        nltk=resource,
    )


HTML_PARSER = Need(
    "an HTML parser for pandas.read_html: 'lxml', or 'bs4' + 'html5lib'",
    "pip install lxml",
    modules=("pandas",),
    alternatives=(("lxml",), ("bs4", "html5lib")),
)
SPACY_MODEL = Need(
    "spaCy model 'en_core_web_sm'",
    "python -m spacy download en_core_web_sm",
    modules=("spacy",),
    spacy_model="en_core_web_sm",
)
PUNKT_TAB = _nltk("tokenizers/punkt_tab/english/", "punkt_tab")
_SYMPY = [_module("sympy"), _module("antlr4", "antlr4-python3-runtime")]
_CODE = [
    _module("numpy"),
    _module("matplotlib"),
    _module("scipy"),
    _module("sortedcontainers"),
    _module("shortuuid"),
]  # solutions import these, in the sandbox's interpreter (this venv's, bound in)
_IFEVAL = [_module("nltk"), _module("langdetect"), _module("immutabledict"), _module("pandas")]
NEEDS: dict[str, list[Need]] = {
    "tablereformat": [HTML_PARSER],
    "tablejoin": [_module("numpy")],
    "amps_hard": [*_SYMPY, _module("lark"), _module("latex2sympy2")],
    "integrals_with_game": _SYMPY,
    "lcb_generation": _CODE,
    "code_generation": _CODE,
    "instruction_following": _IFEVAL,
    "ifbench": [
        *_IFEVAL,
        _module("spacy"),
        _module("emoji"),
        _module("syllapy"),
        SPACY_MODEL,
        _nltk("tokenizers/punkt", "punkt"),
        PUNKT_TAB,
        _nltk("corpora/stopwords", "stopwords"),
        _nltk("taggers/averaged_perceptron_tagger_eng", "averaged_perceptron_tagger_eng"),
    ],
}
# IFEval instructions (2024-11-25 release) that tokenize with NLTK's punkt_tab
IFEVAL_PUNKT = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}


def livebench_installed() -> bool:
    return _importable("livebench")


def require_livebench() -> None:
    if not livebench_installed():
        raise LiveBenchNotInstalled(
            f"LiveBench is not installed (it is not on PyPI); install it with: {INSTALL}"
        )


def missing(questions: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per missing piece (what, the tasks that need it, the fix); [] when all is there."""
    needed: dict[Need, set[str]] = defaultdict(set)
    routes: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    for question in questions:
        task = question["task"]
        try:
            name = route(question)
        except UnsupportedTask as exc:
            problems.append(f"{exc}: leave it out with the task's categories/tasks filters")
            continue
        routes[name].add(task)
        for need in NEEDS.get(name, []):
            needed[need].add(task)
        if name == "instruction_following" and IFEVAL_PUNKT & set(
            question.get("instruction_id_list") or []
        ):
            needed[PUNKT_TAB].add(task)
    problems = sorted(set(problems))
    for need, tasks in needed.items():
        if not need.met():
            problems.append(f"{need.what} (for {', '.join(sorted(tasks))}): {need.fix}")
    if not problems:  # imports last: some scorer modules download what they miss when imported
        for name, tasks in sorted(routes.items()):
            module = ROUTES[name][0]
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - whatever stops the import is reported
                hint = (
                    f": pip install {exc.name}" if isinstance(exc, ImportError) and exc.name else ""
                )
                problems.append(
                    f"importing {module} (for {', '.join(sorted(tasks))}) failed: "
                    f"{type(exc).__name__}: {exc}{hint}"
                )
    return problems


def preflight(questions: Iterable[Mapping[str, Any]]) -> None:
    """Raise :class:`LiveBenchNotInstalled` or :class:`PreflightError`; return when all is there."""
    require_livebench()
    problems = missing(questions)
    if problems:
        raise PreflightError(
            "LiveBench preflight: the selected scorers cannot run in this environment; nothing "
            "was generated. Missing:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nInstall them for this Python ({sys.executable}) and run again."
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _nltk_has(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        return False
    return True
