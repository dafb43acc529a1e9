"""SciCode: step-wise prompts that carry the model's own earlier code, extraction, provided
steps read from SciCode's eval/data/ (stand-ins written here), step evaluation in the sandbox
against an h5 file of targets this test writes in SciCode's layout, and quantgate's own
``scicode`` shim (target reader, comparison helpers) that the step scripts import."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from quantgate.config import CodeTask
from quantgate.runners.code.common import MissingData, sandbox_for
from quantgate.runners.code.scicode import evaluate, generate, preflight
from quantgate.scoring import scicode as sc
from quantgate.serving.client import ChatAnswer
from quantgate.suites import load_suite

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scicode" / "problems.jsonl"
PROBLEMS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
RIGHT = {
    name: step["ground_truth_code"]
    for p in PROBLEMS
    for step in p["sub_steps"]
    for name in [sc.extract_function_name(step["function_header"])]
}


def write_targets(path: Path) -> None:
    """Targets from the ground-truth code, as SciCode stores them: <step>/test<i>/var<j>."""
    import h5py

    with h5py.File(path, "w") as f:
        for problem in PROBLEMS:
            namespace: dict = {}
            exec(problem["required_dependencies"], namespace)
            for step in problem["sub_steps"]:
                exec(step["ground_truth_code"], namespace)
                for i, test in enumerate(step["test_cases"], 1):
                    call = test.split("assert ")[-1].split(", target)")[0].split("(", 1)[1]
                    setup = "\n".join(
                        line for line in test.split("\n") if not line.startswith(("assert", "from"))
                    )
                    exec(setup, namespace)
                    value = eval(call, namespace)
                    values = value if isinstance(value, tuple) else (value,)
                    for j, v in enumerate(values, 1):
                        f[f"{step['step_number']}/test{i}/var{j}"] = v


class FakeClient:
    """Answers each step's prompt from a table of function name -> code; records prompts."""

    def __init__(self, code: dict[str, str]) -> None:
        self.code, self.prompts = code, []
        self.label = "s-scicode-bf16"  # ChatClient.label: names the progress lines

    def complete(self, requests, desc=""):
        answers = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            self.prompts.append(prompt)
            next_step = prompt.split("NEXT STEP")[1]
            name = next(n for n in self.code if f"def {n}(" in next_step)
            answers.append(
                ChatAnswer(
                    content=f"Here:\n```python\nimport numpy as np\n\n{self.code[name]}\n```\n",
                    finish_reason="stop",
                )
            )
        return answers


def suite_for(tmp_path: Path, h5: Path | None, items: str = "problems", problems: Path = FIXTURE):
    h5_line = f"      h5_path: {h5}\n" if h5 else ""
    (tmp_path / "s.yaml").write_text(
        "model: m\nprecisions:\n  bf16: {checkpoint: org/m}\ntasks:\n  sci:\n"
        "    runner: scicode\n    code:\n"
        f"      path: {problems}\n{h5_line}      items: {items}\n      workers: 2\n"
        "      test_timeout: 60\n"
    )
    return load_suite(tmp_path / "s.yaml")


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("scicode") / "test_data.h5"
    write_targets(path)
    return path


def test_step_prompts_carry_the_earlier_steps_code():
    problem = PROBLEMS[0]
    first, prefix = sc.step_prompt(problem, 0, [None] * 3, with_background=False)
    assert "STEPS SO FAR:\n\n\nNEXT STEP" in first  # nothing before step 1
    assert "def wrap(r, L):" in first and "    return coord" in first
    assert "Background: periodic boundary conditions." not in first  # without backgrounds
    model_code = "def wrap(r, L):\n    coord = r % L  # the model's own version\n    return coord"
    second, prefix = sc.step_prompt(problem, 1, [model_code, None, None], with_background=False)
    assert model_code in second.split("NEXT STEP")[0]
    assert "def dist(r1, r2, L):" in second.split("NEXT STEP")[1]
    assert prefix == f"import numpy as np\n{model_code}\n"
    with_bg, _ = sc.step_prompt(problem, 1, [model_code, None, None], with_background=True)
    assert "each step comes with the background knowledge" in with_bg
    assert "Background: minimum image convention." in with_bg
    # without backgrounds the model is asked to write the step's background itself, as upstream
    assert "starts with 'Background: '" in second and "Background: '" not in with_bg
    for prompt in (first, second, with_bg):
        assert "one python code block" in prompt and "import numpy as np" in prompt


def test_extraction_is_upstreams_after_dropping_reasoning():
    reply = (
        "<think>```python\nbad()\n```</think>\n```python\nimport numpy as np\ndef f():\n"
        "    return 1\n```\n```python\nsecond()\n```"
    )
    assert sc.extract_python_script(reply).strip() == "def f():\n    return 1"
    assert sc.extract_python_script("<think>```python\nx = 1\n```") == ""  # cut off
    assert (
        sc.get_function_from_code("import os\ndef g():\n    return 2\n", "g")
        == "def g():\n    return 2"
    )
    assert sc.extract_function_name("class Block(object):\n    pass") == "Block"


PROVIDED_PROBLEM = {
    "problem_id": "62",
    "required_dependencies": "import numpy as np",
    "sub_steps": [
        {
            "step_number": "62.1",
            "step_description_prompt": "Provided.",
            "step_background": "",
            "function_header": "def block(n):\n    '''A block.'''",
            "return_line": "    return b",
            "test_cases": [],
        },
        {
            "step_number": "62.2",
            "step_description_prompt": "Implement `twice`.",
            "step_background": "",
            "function_header": "def twice(n):\n    '''Two blocks.'''",
            "return_line": "    return t",
            "test_cases": ["assert twice(1) == target"],
        },
    ],
}
STAND_IN = "def block(n):\n    b = [n]  # stand-in\n    return b\n\ndef unrelated():\n    pass\n"


def test_provided_steps_are_read_from_scicodes_data_dir(tmp_path):
    problem = {
        "problem_id": "62",
        "sub_steps": [{"function_header": "class Block:\n    def __init__(self, l):"}],
    }
    assert sc.is_provided(problem, 0) and not sc.is_provided(PROBLEMS[0], 0)
    assert sc.provided_code(PROBLEMS[0], 0, tmp_path) is None
    with pytest.raises(sc.ProvidedCodeMissing, match=r"62\.1\.txt.*SciCode.*eval/data"):
        sc.provided_code(problem, 0, tmp_path)
    (tmp_path / "62.1.txt").write_text(
        "class Block:\n    def __init__(self, length):\n        self.length = length\n"
    )
    # upstream's quirk: the header's first name is the method's
    assert sc.provided_code(problem, 0, tmp_path).startswith("def __init__(self, length")
    assert sc.provided_files([problem, PROBLEMS[0]]) == ["62.1.txt"]
    assert sc.provided_files([{"problem_id": "13", "sub_steps": [{}] * 5}]) == []  # no step 13.6


def test_a_provided_step_is_not_asked_and_later_steps_see_its_function(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps(PROVIDED_PROBLEM) + "\n")
    (tmp_path / "test_data.h5").write_bytes(b"")
    suite = suite_for(tmp_path, tmp_path / "test_data.h5", problems=tmp_path / "p.jsonl")
    with pytest.raises(MissingData, match=r"62\.1\.txt not found in .*SciCode.*eval/data"):
        preflight(suite, "sci")
    (tmp_path / "62.1.txt").write_text(STAND_IN)
    preflight(suite, "sci")
    client = FakeClient({"twice": "def twice(n):\n    t = block(n) * 2\n    return t"})
    out = generate([PROVIDED_PROBLEM], suite, "sci", client, 0, tmp_path)
    assert list(out) == [("62", 1)] and len(client.prompts) == 1
    earlier = client.prompts[0].split("NEXT STEP")[0]
    assert "b = [n]" in earlier and "unrelated" not in earlier  # only the named function
    assert "b = [n]" in out[("62", 1)]["program"]


def test_the_hub_dataset_needs_all_three_provided_files(tmp_path):
    (tmp_path / "test_data.h5").write_bytes(b"")
    (tmp_path / "s.yaml").write_text(
        "model: m\nprecisions:\n  bf16: {checkpoint: org/m}\ntasks:\n  sci:\n"
        "    runner: scicode\n    code:\n      h5_path: test_data.h5\n      exclude: ['13']\n"
    )
    suite = load_suite(tmp_path / "s.yaml")
    with pytest.raises(MissingData, match=r"62\.1\.txt, 76\.3\.txt not found"):
        preflight(suite, "sci")
    for name in ("62.1.txt", "76.3.txt"):
        (tmp_path / name).write_text(STAND_IN)
    preflight(suite, "sci")  # 13 is excluded: 13.6.txt is not needed


def test_a_steps_targets_are_copied_alone(targets, tmp_path):
    import h5py

    (tmp_path / "t.h5").write_bytes(sc.step_targets(targets, "90.3"))
    with h5py.File(tmp_path / "t.h5") as f:
        assert list(f) == ["90.3"] and list(f["90.3/test1"]) == ["var1", "var2"]
    with pytest.raises(KeyError, match="99.1"):
        sc.step_targets(targets, "99.1")


@pytest.mark.slow
def test_steps_are_evaluated_in_the_sandbox(targets, tmp_path):
    suite = suite_for(tmp_path, targets)
    wrong_stats = "def stats(x):\n    return (float(np.mean(x)), float(np.std(x, ddof=1)))"
    client = FakeClient({**RIGHT, "stats": wrong_stats})
    box = sandbox_for(suite.tasks["sci"].code)
    per_item, samples, extra = evaluate("sci", suite, client, box, None)
    status = {s["item"]: (s["status"], s["failed_test"]) for s in samples}
    assert status == {
        "90.1": ("passed", None),
        "90.2": ("passed", None),
        "90.3": ("wrong_answer", 0),
        "91.1": ("passed", None),
    }
    assert per_item == {"90": [0.0], "91": [1.0]}  # a problem passes when all its steps pass
    assert extra["subproblem_accuracy"] == pytest.approx(3 / 4)
    assert extra["main_problem_resolve_rate"] == pytest.approx(1 / 2)
    assert {s["isolation"] for s in samples} == {box.isolation}
    # step 2's prompt held the model's step-1 code (errors carry forward)
    assert any(RIGHT["wrap"].split("\n")[1] in p.split("NEXT STEP")[0] for p in client.prompts)


@pytest.mark.slow
def test_a_wrong_earlier_step_breaks_the_later_one(targets, tmp_path):
    suite = suite_for(tmp_path, targets, items="steps")
    broken_wrap = "def wrap(r, L):\n    coord = r\n    return coord"
    per_item, samples, _ = evaluate(
        "sci",
        suite,
        FakeClient({**RIGHT, "wrap": broken_wrap}),
        sandbox_for(suite.tasks["sci"].code),
        None,
    )
    assert per_item == {"90.1": [0.0], "90.2": [0.0], "90.3": [1.0], "91.1": [1.0]}


def test_missing_targets_skip_with_where_to_get_them(tmp_path):
    with pytest.raises(MissingData, match="drive.google.com.*code.h5_path"):
        preflight(suite_for(tmp_path, tmp_path / "absent.h5"), "sci")
    with pytest.raises(MissingData, match="h5_path is not set"):
        preflight(suite_for(tmp_path, None), "sci")


def store(group, name: str, value) -> None:
    """``value`` under ``group[name]`` as SciCode's test_data.h5 stores it (written for this test
    from the layout the reader documents)."""
    import scipy.sparse as sp

    if sp.issparse(value):
        m = group.create_group(name).create_group("sparse_matrix")
        m["data"], m["shape"] = value.data, np.array(value.shape)
        if value.format == "coo":
            m["row"], m["col"] = value.row, value.col
        else:
            m["indices"], m["indptr"] = value.indices, value.indptr
            if value.format == "bsr":
                m["blocksize"] = np.array(value.blocksize)
    elif isinstance(value, dict):
        g = group.create_group(name)
        for key, v in value.items():
            store(g, str(key), v)
    elif isinstance(value, list):
        items = group.create_group(name).create_group("list")
        for i, v in enumerate(value):
            items[f"var{i + 1}"] = v
    elif isinstance(value, str):
        group[name] = value.encode("utf-8")
    else:
        group[name] = value


def shim_targets(path: Path):
    """Step 95.1's targets in every shape the reader handles; returns what each should read as."""
    import h5py
    import scipy.sparse as sp

    csr = sp.csr_matrix(np.array([[0.0, 1.5], [2.0, 0.0]]))
    expected = [
        3.25,
        "spin up",
        {"alpha": "label", 0.5: np.array([1.0, 2.0]), "H": csr},  # "0.5" read as the float 0.5
        csr,
        sp.coo_matrix(np.array([[0.0, 0.0], [4.0, 0.0]])),
        [np.array([1, 2]), 7.0],
        (np.arange(3.0), "two", sp.bsr_matrix(np.eye(4), blocksize=(2, 2))),
    ]
    with h5py.File(path, "w") as f:
        for i, value in enumerate(expected, 1):
            test = f.create_group(f"95.1/test{i}")
            for j, v in enumerate(value if isinstance(value, tuple) else (value,), 1):
                store(test, f"var{j}", v)
    return expected


@pytest.fixture
def shim(monkeypatch):
    monkeypatch.syspath_prepend(str(sc.SHIM))
    for name in [m for m in sys.modules if m == "scicode" or m.startswith("scicode.")]:
        monkeypatch.delitem(sys.modules, name)
    yield (
        importlib.import_module("scicode.parse.parse"),
        importlib.import_module("scicode.compare.cmp"),
    )
    for name in [m for m in sys.modules if m == "scicode" or m.startswith("scicode.")]:
        del sys.modules[name]


def test_the_shim_reads_every_stored_shape(shim, tmp_path):
    parse, cmp = shim
    expected = shim_targets(tmp_path / "t.h5")
    got = parse.process_hdf5_to_tuple("95.1", len(expected), tmp_path / "t.h5")
    assert got[0] == 3.25 and got[1] == "spin up"
    assert set(got[2]) == {"alpha", 0.5, "H"} and got[2]["alpha"] == "label"
    assert cmp.are_dicts_close(got[2], expected[2])
    assert got[3].format == "csr" and cmp.are_csc_matrix_close(got[3], expected[3])
    assert got[4].format == "coo" and np.array_equal(got[4].toarray(), expected[4].toarray())
    assert isinstance(got[5], list) and np.array_equal(got[5][0], [1, 2]) and got[5][1] == 7.0
    assert isinstance(got[6], tuple) and got[6][1] == "two" and got[6][2].format == "bsr"
    assert cmp.cmp_tuple_or_list(got[6][:2], expected[6][:2])
    assert np.array_equal(got[6][2].toarray(), np.eye(4))
    with pytest.raises(FileNotFoundError, match="95.1/test8"):
        parse.process_hdf5_to_tuple("95.1", 8, tmp_path / "t.h5")


def test_the_shims_comparisons(shim):
    import scipy.sparse as sp
    import sympy

    _, cmp = shim
    assert cmp.cmp_tuple_or_list(
        (1.0, np.array([1.0, 2.0]), True, "a"), [1.0 + 1e-9, np.array([1.0, 2.0]), True, "a"]
    )
    assert not cmp.cmp_tuple_or_list((1.0, 2.0), (1.0,))  # lengths differ
    assert not cmp.cmp_tuple_or_list((True,), (False,))
    assert not cmp.cmp_tuple_or_list(("a",), ("b",))  # allclose cannot: compared with ==
    assert not cmp.cmp_tuple_or_list((1.0,), (1.1,))
    m = sp.csc_matrix(np.eye(2))
    assert cmp.cmp_tuple_or_list((m, {"k": 1.0}), (m.tocsr(), {"k": 1.0}))
    assert not cmp.cmp_tuple_or_list(({"k": 1.0},), ({"j": 1.0},))
    x = sympy.Symbol("x")
    assert cmp.are_dicts_close({x: x, "v": 1.0}, {"x": "x", "v": 1.0 + 1e-7})
    assert not cmp.are_dicts_close({"v": 1.0}, {"v": 1.0 + 1e-3})
    assert cmp.are_dicts_close({"v": 1.0}, {"v": 1.0 + 1e-3}, rtol=1e-2)
    assert not cmp.are_dicts_close({"m": m}, {"m": sp.csc_matrix(2 * np.eye(2))})


@pytest.mark.slow
def test_a_step_script_reads_dicts_and_sparse_targets_in_the_sandbox(tmp_path):
    expected = shim_targets(tmp_path / "t.h5")
    program = (
        "import numpy as np\nimport scipy.sparse as sp\n"
        "def make(i):\n"
        "    return [3.25, 'spin up',\n"
        "            {'alpha': 'label', 0.5: np.array([1.0, 2.0]),\n"
        "             'H': sp.csr_matrix(np.array([[0.0, 1.5], [2.0, 0.0]]))},\n"
        "            sp.csr_matrix(np.array([[0.0, 1.5], [2.0, 0.0]])),\n"
        "            sp.coo_matrix(np.array([[0.0, 0.0], [4.0, 0.0]])),\n"
        "            [np.array([1, 2]), 7.0],\n"
        "            (np.arange(3.0), 'two', sp.bsr_matrix(np.eye(4)))][i]\n"
    )
    tests = [
        "assert np.allclose(make(0), target)",
        "assert make(1) == target",
        "from scicode.compare.cmp import are_dicts_close\nassert are_dicts_close(make(2), target)",
        "from scicode.compare.cmp import cmp_tuple_or_list\n"
        "assert cmp_tuple_or_list([make(3)], [target])",
        "assert np.allclose(make(4).toarray(), target.toarray())",
        "from scicode.compare.cmp import cmp_tuple_or_list\n"
        "assert cmp_tuple_or_list(make(5), target)",
        "from scicode.compare.cmp import cmp_tuple_or_list\n"
        "assert cmp_tuple_or_list(make(6)[:2], target[:2])\n"
        "assert np.allclose(make(6)[2].toarray(), target[2].toarray())",
    ]
    assert len(expected) == len(tests)
    box = sandbox_for(CodeTask(test_timeout=60))
    files = sc.step_files(program, "95.1", tests, (tmp_path / "t.h5").read_bytes())
    assert {"scicode/parse/parse.py", "scicode/compare/cmp.py"} <= set(files)
    run = box.run(files, ["step.py"])
    assert run.status == "ok", run.stderr
    wrong = program.replace("'spin up'", "'spin down'")
    run = box.run(
        sc.step_files(wrong, "95.1", tests, (tmp_path / "t.h5").read_bytes()), ["step.py"]
    )
    assert run.status == "runtime_error" and sc.failed_test(run.stderr) == 1
