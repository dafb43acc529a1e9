"""The LiveBench preflight (without LiveBench: what is importable is faked) and the routing of
questions to LiveBench's scorers, as gen_ground_truth_judgment.play_a_match_gt routes them."""

from __future__ import annotations

import json

import pytest

from quantgate.runners.livebench import preflight as pre
from quantgate.runners.livebench import run_livebench
from quantgate.runners.livebench.judge import UnsupportedTask, route
from quantgate.suites import load_suite
from tests.support import write_suite


def q(task: str, category: str = "reasoning", released: str = "2024-11-25", **extra) -> dict:
    return {
        "question_id": f"{task}-{released}",
        "task": task,
        "category": category,
        "livebench_release_date": released,
        "ground_truth": "x",
        "turns": ["?"],
        **extra,
    }


@pytest.mark.parametrize(
    "question, expected",
    [
        (q("math_comp", "math", subtask="amc_12b_2024"), "mathcontest"),
        (q("math_comp", "math", subtask="2023_amc_12a"), "mathcontest"),
        (q("math_comp", "math", subtask="smc_2023"), "mathcontest"),
        (q("math_comp", "math", subtask="aime_2024_1"), "aime"),
        (q("olympiad", "math", subtask="usamo_2024"), "proof_rearrangement"),
        (q("AMPS_Hard", "math", subtask="amps_hard_integrals"), "amps_hard"),
        (q("tablereformat", "data_analysis"), "tablereformat"),
        (q("zebra_puzzle"), "zebra_puzzle"),
        (q("web_of_lies_v3"), "web_of_lies_v3"),
        (q("connections", "language"), "connections"),
        (q("LCB_generation", "coding"), "lcb_generation"),
        (q("code_completion", "coding"), "code_generation"),
        (q("paraphrase", "instruction_following"), "instruction_following"),
        (q("if_bench", "instruction_following", "2025-11-25"), "ifbench"),
    ],
)
def test_questions_go_to_the_scorer_upstream_would_use(question, expected):
    assert route(question) == expected


def test_tasks_without_a_scorer_are_refused_with_the_reason():
    with pytest.raises(UnsupportedTask, match="'agentic_coding' .*Docker"):
        route(q("agentic_coding", "agentic_coding"))
    with pytest.raises(UnsupportedTask, match="no LiveBench scorer for task 'made_up'"):
        route(q("made_up"))
    with pytest.raises(UnsupportedTask, match="'math_comp'"):  # upstream: NotImplementedError
        route(q("math_comp", "math", subtask="amc12_2024b"))


@pytest.fixture
def world(monkeypatch):
    """Pretend which modules, NLTK data and imports exist: everything unless removed."""
    absent: set[str] = set()
    imported: list[str] = []
    monkeypatch.setattr(pre, "_importable", lambda name: name not in absent)
    monkeypatch.setattr(pre, "_nltk_has", lambda resource: resource not in absent)
    monkeypatch.setattr(pre.importlib, "import_module", lambda name: imported.append(name))
    return absent, imported


def test_without_livebench_the_reason_is_the_pinned_install_command(world):
    world[0].add("livebench")
    with pytest.raises(pre.LiveBenchNotInstalled) as caught:
        pre.preflight([q("zebra_puzzle")])
    assert str(caught.value) == (
        "LiveBench is not installed (it is not on PyPI); install it with: pip install "
        '"livebench @ git+https://github.com/LiveBench/LiveBench.git@'
        'b0fb577be60ea5ba6e3e677a84af127c893af0ef"'
    )


def test_everything_missing_is_listed_in_one_message_before_any_import(world):
    absent, imported = world
    absent |= {"lxml", "html5lib", "tokenizers/punkt_tab/english/", "en_core_web_sm", "syllapy"}
    questions = [
        q("tablereformat", "data_analysis"),
        q(
            "paraphrase",
            "instruction_following",
            instruction_id_list=["length_constraints:number_sentences"],
        ),
        q("simplify", "instruction_following", instruction_id_list=["punctuation:no_comma"]),
        q("if_bench", "instruction_following", "2025-11-25"),
        q("agentic_coding", "agentic_coding"),
        q("zebra_puzzle"),
    ]
    with pytest.raises(pre.PreflightError) as caught:
        pre.preflight(questions)
    message = str(caught.value)
    assert message.splitlines()[0] == (
        "LiveBench preflight: the selected scorers cannot run in "
        "this environment; nothing was generated. Missing:"
    )
    assert (
        "  - no LiveBench scorer for task 'agentic_coding' (it needs Docker and litellm)" in message
    )
    assert (
        "  - an HTML parser for pandas.read_html: 'lxml', or 'bs4' + 'html5lib' "
        "(for tablereformat): pip install lxml"
    ) in message
    assert (
        "  - NLTK data 'tokenizers/punkt_tab/english/' (for if_bench, paraphrase): "
        "python -m nltk.downloader punkt_tab"
    ) in message  # not simplify: no sentence count
    assert (
        "  - spaCy model 'en_core_web_sm' (for if_bench): python -m spacy download en_core_web_sm"
    ) in message
    assert "  - Python module 'syllapy' (for if_bench): pip install syllapy" in message
    assert message.count("\n  - ") == 5 and "this Python (" in message.splitlines()[-1]
    assert imported == []  # LiveBench's IFBench module downloads what it misses when imported


def test_bs4_with_html5lib_is_enough_for_read_html(world):
    world[0].add("lxml")
    assert pre.missing([q("tablereformat", "data_analysis")]) == []
    world[0].add("bs4")
    assert len(pre.missing([q("tablereformat", "data_analysis")])) == 1


def test_when_all_is_there_the_scorer_modules_are_imported_and_failures_reported(
    world, monkeypatch
):
    absent, imported = world
    questions = [q("zebra_puzzle"), q("math_comp", "math", subtask="amc_12b_2024")]
    assert pre.missing(questions) == []
    assert imported == [
        "livebench.process_results.math.math_competitions.utils",
        "livebench.process_results.reasoning.zebra_puzzle.utils",
    ]

    def broken(name):
        raise ModuleNotFoundError("No module named 'rich'", name="rich")

    monkeypatch.setattr(pre.importlib, "import_module", broken)
    (problem,) = pre.missing([q("zebra_puzzle")])
    assert problem == (
        "importing livebench.process_results.reasoning.zebra_puzzle.utils (for "
        "zebra_puzzle) failed: ModuleNotFoundError: No module named 'rich': "
        "pip install rich"
    )


def test_the_runner_checks_before_it_generates(world, tmp_path, chat_server):
    world[0].add("lxml")
    world[0].add("bs4")
    server = chat_server(lambda text: "never asked")
    suite = load_suite(write_suite(tmp_path, scorer=None, questions_dir=str(tmp_path / "q")))
    folder = tmp_path / "q" / "live_bench" / "data_analysis" / "tablereformat"
    folder.mkdir(parents=True)
    (folder / "question.jsonl").write_text(
        json.dumps({**q("tablereformat", "data_analysis"), "livebench_removal_date": ""}) + "\n"
    )
    with pytest.raises(pre.PreflightError, match="HTML parser"):
        run_livebench(
            "livebench",
            suite,
            "bf16",
            server.endpoint(),
            out_dir=tmp_path / "o",
            cache_dir=tmp_path / "c",
        )
    assert server.bodies == [] and not (tmp_path / "c").exists()
