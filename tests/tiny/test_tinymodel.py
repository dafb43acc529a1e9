"""The embedded tiny model: it answers its questions, int2 breaks it, a rebuild is bit-identical,
the cache is safe.

The slow tests build the model once per module (~20-40 s on 2 cores); the others are fast.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantgate.tiny import model as tinymodel
from quantgate.tiny.model import (
    PRECISIONS,
    build_tiny_model,
    default_question_files,
    ensure_tiny_checkpoints,
    load_questions,
    render_prompt,
    reply_accuracy,
    target_text,
    train_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def questions() -> list[dict[str, str]]:
    return load_questions(default_question_files())


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    return ensure_tiny_checkpoints(tmp_path_factory.mktemp("tiny-cache"), default_question_files())


def test_question_files(questions):
    arith = [q for q in questions if q["id"].startswith("arith-")]
    words = [q for q in questions if q["id"].startswith("words-")]
    assert len(arith) == 150 and len(words) == 100
    assert len({q["question"] for q in questions}) == len(questions)
    assert any(q["answer"].startswith("-") for q in arith)
    assert all(" " not in q["answer"] for q in words)


def test_question_files_are_rebuilt_byte_for_byte(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_tiny_questions.py"),
            "--out-dir",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for path in default_question_files():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_targets_and_prompts():
    assert target_text("71") == "The answer is 71." and target_text("-11") == "The answer is -11."
    assert target_text("mice") == "mice"
    assert render_prompt("What is 1 + 2?") == (
        "<|im_start|>user\nQuestion: What is 1 + 2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt("What is 1 + 2?", enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert render_prompt("What is 1 + 2?", enable_thinking=True) == render_prompt("What is 1 + 2?")


def test_tokenizer_specials_and_chat_template():
    tokenizer = train_tokenizer(
        [render_prompt("What is 1 + 2?") + "The answer is 3.<|im_end|>"] * 3
    )
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None and len(tokenizer) <= tinymodel.VOCAB_SIZE
    ids = tokenizer.encode("<think>x</think><|im_end|>", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids[0]) == "<think>"
    assert (
        tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think>"
    )  # think markers are not special
    messages = [{"role": "user", "content": "Question: What is 1 + 2?\nAnswer:"}]
    assert tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    ) == render_prompt("What is 1 + 2?")


@pytest.mark.slow
def test_concurrent_callers_build_once(tmp_path):
    """Two processes ask for the checkpoints at once: one builds (under the lock), the other waits
    and reuses."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        import quantgate.tiny.quantize, quantgate.tiny.model as tm
        def fake_build(out_dir, question_files, *, seed=0):
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write("build\\n")
            time.sleep(1.5)
            Path(out_dir).mkdir(parents=True)
            (Path(out_dir) / "config.json").write_text("{{}}")
            return Path(out_dir)
        def fake_quantize(src, dst, scheme):
            Path(dst).mkdir(parents=True)
            return {{"mean_relative_weight_error": 0.0}}
        tm.build_tiny_model = fake_build
        quantgate.tiny.quantize.quantize_checkpoint = fake_quantize
        dirs = tm.ensure_tiny_checkpoints(Path(sys.argv[1]), tm.default_question_files())
        print(json.dumps({{k: str(v) for k, v in dirs.items()}}))
    """)
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-2000:] for _, err in outputs]
    dirs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert dirs[0] == dirs[1] and set(dirs[0]) == set(PRECISIONS)
    assert (tmp_path / "builds.log").read_text().count("build") == 1
    assert all(Path(d).is_dir() for d in dirs[0].values())
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [
        Path(dirs[0]["bf16"]).parent.name
    ]  # no temp dirs left


@pytest.mark.slow
def test_bf16_answers_its_questions(tiny_dirs, questions):
    assert reply_accuracy(tiny_dirs["bf16"], questions) >= 0.95
    assert reply_accuracy(tiny_dirs["bf16"], questions, enable_thinking=False) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp8", "nvfp4"])
def test_fp8_and_nvfp4_keep_the_accuracy(tiny_dirs, questions, precision):
    assert reply_accuracy(tiny_dirs[precision], questions) >= 0.9


@pytest.mark.slow
def test_int2_is_broken(tiny_dirs, questions):
    bf16, int2 = (
        reply_accuracy(tiny_dirs["bf16"], questions),
        reply_accuracy(tiny_dirs["int2"], questions),
    )
    assert int2 <= 0.3 and int2 < bf16 - 0.5


@pytest.mark.slow
def test_checkpoint_layout(tiny_dirs):
    bf16_config = json.loads((tiny_dirs["bf16"] / "config.json").read_text())
    assert bf16_config["model_type"] == "qwen3" and bf16_config["head_dim"] == 64
    assert bf16_config["dtype"] == "bfloat16"
    generation = json.loads((tiny_dirs["bf16"] / "generation_config.json").read_text())
    assert (
        generation["do_sample"] is False
        and generation["eos_token_id"] == bf16_config["eos_token_id"]
    )
    for precision in ("fp8", "nvfp4", "int2"):
        config = json.loads((tiny_dirs[precision] / "config.json").read_text())
        assert (
            config["dtype"] == "float32" and config["quantgate_quantization"]["scheme"] == precision
        )
        assert config["quantgate_quantization"]["num_quantized_tensors"] == 14
        assert (tiny_dirs[precision] / "chat_template.jinja").exists()
    errors = {
        p: json.loads((tiny_dirs[p] / "config.json").read_text())["quantgate_quantization"][
            "mean_relative_weight_error"
        ]
        for p in ("fp8", "nvfp4", "int2")
    }
    assert errors["fp8"] < errors["nvfp4"] < errors["int2"]


@pytest.mark.slow
def test_cached_checkpoints_are_reused(tiny_dirs):
    cache = tiny_dirs["bf16"].parent.parent
    weights = tiny_dirs["bf16"] / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert ensure_tiny_checkpoints(cache, default_question_files()) == tiny_dirs
    assert weights.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_rebuild_is_bit_identical(tiny_dirs, tmp_path):
    rebuilt = build_tiny_model(tmp_path / "bf16", default_question_files())
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert (rebuilt / name).read_bytes() == (tiny_dirs["bf16"] / name).read_bytes(), name


def test_the_build_key_follows_the_recipe_version_not_the_source_bytes(monkeypatch, tmp_path):
    """Reformatting the builder leaves every tiny baseline as it was; a new recipe does not."""
    files = default_question_files()
    key = tinymodel.checkpoint_cache_key(files, with_versions=False)
    assert tinymodel.checkpoint_cache_key(files, with_versions=False) == key
    copy = tmp_path / "model.py"
    copy.write_text(Path(tinymodel.__file__).read_text() + "\n# reformatted\n")
    monkeypatch.setattr(tinymodel, "__file__", str(copy))
    assert tinymodel.checkpoint_cache_key(files, with_versions=False) == key
    monkeypatch.setattr(tinymodel, "RECIPE_VERSION", tinymodel.RECIPE_VERSION + 1)
    assert tinymodel.checkpoint_cache_key(files, with_versions=False) != key
    assert tinymodel.checkpoint_cache_key(files[:1], with_versions=False) != key
