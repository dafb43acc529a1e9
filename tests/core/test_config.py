"""Suite files: validation and the errors a user sees."""

from pathlib import Path

import pytest

from quantgate.config import SuiteError
from quantgate.suites import discover_suites, load_suite

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
model: m
precisions:
  bf16: {checkpoint: org/m}
tasks:
  t: {lmeval_task: x, metric: "acc,none"}
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_committed_suites_validate():
    suites = discover_suites(REPO / "tests" / "accuracy" / "suites")
    tiny = suites["tiny"]
    assert tiny.reference == "bf16"
    assert set(tiny.precisions) == {"bf16", "fp8", "nvfp4", "int4", "int2", "fp8_online"}
    assert tiny.precisions["fp8_online"].requires == ["gpu"]
    assert tiny.precisions["int2"].expect == tiny.precisions["int4"].expect == "fail"


def test_defaults(tmp_path):
    suite = load_suite(_write(tmp_path, MINIMAL))
    assert suite.name == "s" and suite.reference == "bf16" and suite.engine.kind == "auto"
    assert suite.tasks["t"].gate.method == "paired" and suite.tasks["t"].repeats == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('metric: "acc,none"', "metric: acc"),
            "tasks.t.metric: found 'acc' (str); expected lm-eval's '<metric>,<filter>' key",
        ),
        (("tasks:", "reference: fp16\ntasks:"), "(top level): found"),
        (
            ("{lmeval_task: x,", "{lmeval_task: x, repeats: 0,"),
            "tasks.t.repeats: found 0 (int); expected greater than or equal to 1",
        ),
        (
            ("{lmeval_task: x,", "{lmeval_task: x, gate: {method: recovery},"),
            "method 'recovery' needs 'threshold'",
        ),
        (
            ("model: m", "model: m\nengine: {kind: tensorrt}"),
            "engine.kind: found 'tensorrt' (str); expected 'vllm', 'transformers' or 'auto'",
        ),
        (
            ("model: m", "model: m\nengine: {env: {VLLM_ATTENTION_BACKEND: TRITON_ATTN}}"),
            "set engine.vllm.attention_backend instead",
        ),
        (
            ("bf16: {checkpoint: org/m}", "bf16: {checkpoint: org/m, quantisation: fp8}"),
            "precisions.bf16.quantisation: unknown key",
        ),
        (("  t: {", "  Bad-Name: {"), "name 'Bad-Name' must match"),
    ],
)
def test_errors_name_file_key_found_and_expected(tmp_path, change, expected):
    path = _write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_reference_must_be_a_precision(tmp_path):
    with pytest.raises(
        SuiteError, match=r"reference 'fp16' is not one of the precisions \['bf16'\]"
    ):
        load_suite(_write(tmp_path, MINIMAL + "reference: fp16\n"))


def test_duplicate_keys_are_an_error_not_silently_merged(tmp_path):
    text = MINIMAL.replace("tasks:", 'tasks:\n  t: {lmeval_task: y, metric: "acc,none"}')
    with pytest.raises(SuiteError, match=r"line \d+: duplicate key 't' \(first on line \d+\)"):
        load_suite(_write(tmp_path, text))


def test_not_a_mapping_and_yaml_syntax(tmp_path):
    with pytest.raises(SuiteError, match="found list; expected a mapping"):
        load_suite(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SuiteError, match=r"s\.yaml: "):
        load_suite(_write(tmp_path, "model: [unclosed\n"))


def test_name_comes_from_the_file(tmp_path):
    with pytest.raises(SuiteError, match="the suite's name is its file name"):
        load_suite(_write(tmp_path, MINIMAL + "name: other\n"))


def test_task_config_hash_tracks_generation_but_not_the_gate(tmp_path):
    base = load_suite(_write(tmp_path, MINIMAL))
    other_gen = load_suite(_write(tmp_path, MINIMAL + "generation: {max_gen_toks: 9}\n", "g.yaml"))
    other_gate = load_suite(
        _write(
            tmp_path,
            MINIMAL.replace('metric: "acc,none"}', 'metric: "acc,none", gate: {margin: 0.1}}'),
            "h.yaml",
        )
    )
    assert base.task_config_hash("t") != other_gen.task_config_hash("t")
    assert base.task_config_hash("t") == other_gate.task_config_hash("t")


CODE = """
model: m
precisions:
  bf16: {checkpoint: org/m}
tasks:
  lcb:
    runner: livecodebench
    code: {version: release_v5, start_date: 2024-10-01, end_date: 2025-02-01}
  sci:
    runner: scicode
    code: {split: validation, h5_path: ~/test_data.h5, items: steps}
"""


def test_code_tasks_and_their_errors(tmp_path):
    suite = load_suite(_write(tmp_path, CODE))
    lcb, sci = suite.tasks["lcb"].code, suite.tasks["sci"].code
    assert (lcb.version, str(lcb.start_date), lcb.test_timeout) == ("release_v5", "2024-10-01", 6)
    assert (sci.split, sci.items, sci.extraction) == ("validation", "steps", "fenced")
    for change, expected in [
        (
            (
                "code: {version: release_v5, start_date: 2024-10-01, end_date: 2025-02-01}",
                "code: {}",
            ),
            "runner 'livecodebench' needs 'code.version'",
        ),
        (
            ("split: validation", "split: dev"),
            "tasks.sci.code.split: found 'dev' (str); expected 'validation' or 'test'",
        ),
        (("items: steps", "items: steps, workers: 0"), "tasks.sci.code.workers: found 0"),
        (("items: steps", "items: steps, h5: x"), "tasks.sci.code.h5: unknown key"),
    ]:
        with pytest.raises(
            SuiteError, match=".*".join(map(__import__("re").escape, expected.split("*")))
        ):
            load_suite(_write(tmp_path, CODE.replace(*change)))


def test_code_settings_change_the_task_hash_but_leave_other_tasks_alone(tmp_path):
    suite = load_suite(_write(tmp_path, CODE))
    other = load_suite(_write(tmp_path, CODE.replace("items: steps", "items: problems"), "o.yaml"))
    assert suite.task_config_hash("sci") != other.task_config_hash("sci")
    assert suite.task_config_hash("lcb") == other.task_config_hash("lcb")
    # tasks without code settings hash as before the code runners existed (committed baselines)
    tiny = load_suite(REPO / "tests" / "accuracy" / "suites" / "tiny.yaml")
    stored = __import__("json").loads((REPO / "baselines/tiny/arith/bf16.json").read_text())
    assert tiny.task_config_hash("arith") == stored["provenance"]["task_config_hash"]
