"""The embedded tiny model: right on some questions and wrong on others, its quantized copies in
the order their formats promise, int2 broken; a rebuild is bit-identical, the cache is safe.

The slow tests build the model once per module (~60 s on 2 cores); the others are fast. They
assert properties (ranges, orderings, both flip directions), never a build's exact numbers.
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
    auxiliary_items,
    build_tiny_model,
    default_question_files,
    ensure_tiny_checkpoints,
    generate_replies,
    load_questions,
    render_prompt,
    reply_accuracy,
    target_text,
    train_split,
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
            return {{"format": scheme, "mean_relative_weight_error": 0.0}}
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


def test_train_split_holds_out_questions_of_every_kind(questions):
    trained, held_out = train_split(questions)
    assert len(trained) + len(held_out) == len(questions)
    assert 0.75 <= len(trained) / len(questions) <= 0.95
    for kind in ("arith-", "words-"):
        assert any(q["id"].startswith(kind) for q in held_out)
    assert train_split(list(reversed(questions)))[1] == list(reversed(held_out))  # by text


def test_auxiliary_items_are_of_the_same_kinds_and_never_a_question(questions):
    auxiliary = auxiliary_items(questions)
    asked = {q["question"] for q in questions}
    assert auxiliary and not asked & {a["question"] for a in auxiliary}
    assert len({a["question"] for a in auxiliary}) == len(auxiliary)
    for start in ("What is 1", "What is the plural of", "What is the opposite of", "What day"):
        assert any(a["question"].startswith(start) for a in auxiliary)
    assert auxiliary_items(questions) == auxiliary  # deterministic


def test_tokenizer_splits_digits_one_per_token():
    tokenizer = train_tokenizer([render_prompt("What is 23 + 48?") + "The answer is 71."] * 5)
    tokens = tokenizer.tokenize("What is 123 + 48?")
    assert [t for t in tokens if t.strip("Ġ").isdigit()] == ["1", "2", "3", "4", "8"]


def _scores(directory, items) -> dict[str, bool]:
    replies = generate_replies(directory, [item["question"] for item in items])
    return {i["id"]: r.strip() == target_text(i["answer"]) for i, r in zip(items, replies)}


@pytest.fixture(scope="module")
def scores(tiny_dirs, questions) -> dict[str, dict[str, bool]]:
    return {p: _scores(tiny_dirs[p], questions) for p in PRECISIONS}


def _accuracy(item_scores: dict[str, bool], kind: str = "") -> float:
    chosen = [v for k, v in item_scores.items() if k.startswith(kind)]
    return sum(chosen) / len(chosen)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["arith-", "words-"])
def test_bf16_is_right_on_some_questions_and_wrong_on_others(scores, questions, kind):
    assert 0.4 <= _accuracy(scores["bf16"], kind) <= 0.9
    _, held_out = train_split(questions)
    held = {q["id"] for q in held_out if q["id"].startswith(kind)}
    trained = {k for k in scores["bf16"] if k.startswith(kind)} - held
    # the train split is mostly right, the held-out questions mostly wrong
    assert _accuracy({k: scores["bf16"][k] for k in trained}) >= 0.6
    assert _accuracy({k: scores["bf16"][k] for k in held}) <= 0.3


@pytest.mark.slow
def test_bf16_thinking_off_prompt_answers_alike(tiny_dirs, questions, scores):
    off = reply_accuracy(tiny_dirs["bf16"], questions, enable_thinking=False)
    assert abs(off - _accuracy(scores["bf16"])) <= 0.1


@pytest.mark.slow
def test_quantized_copies_lose_in_the_order_of_their_formats(scores):
    drop = {p: _accuracy(scores["bf16"]) - _accuracy(scores[p]) for p in PRECISIONS[1:]}
    assert drop["fp8"] <= 0.03 and drop["nvfp4"] <= 0.05
    assert max(drop["fp8"], drop["nvfp4"]) < drop["int4"] < drop["int2"]
    assert _accuracy(scores["int2"]) <= 0.1


@pytest.mark.slow
def test_some_quantized_copy_flips_items_both_ways(scores):
    def flips(precision):
        ref, cand = scores["bf16"], scores[precision]
        return sum(ref[k] and not cand[k] for k in ref), sum(cand[k] and not ref[k] for k in ref)

    assert any(down > 0 and up > 0 for down, up in map(flips, ("fp8", "nvfp4", "int4")))


@pytest.mark.slow
def test_checkpoint_layout(tiny_dirs):
    """config.json and the safetensors dtypes say what each precision is; every quantized matrix
    meets vLLM's shape rules (both dimensions multiples of 128)."""
    from safetensors import safe_open

    bf16_config = json.loads((tiny_dirs["bf16"] / "config.json").read_text())
    assert bf16_config["model_type"] == "qwen3" and bf16_config["head_dim"] == 64
    assert bf16_config["dtype"] == "bfloat16"
    kv = bf16_config["num_key_value_heads"] * bf16_config["head_dim"]
    for size in (bf16_config["hidden_size"], bf16_config["intermediate_size"], kv):
        assert size % 128 == 0
    generation = json.loads((tiny_dirs["bf16"] / "generation_config.json").read_text())
    assert (
        generation["do_sample"] is False
        and generation["eos_token_id"] == bf16_config["eos_token_id"]
    )
    expected = {
        "fp8": ("fp8", {"weight": "F8_E4M3", "weight_scale_inv": "F32"}),
        "nvfp4": (
            "compressed-tensors",
            {"weight_packed": "U8", "weight_scale": "F8_E4M3", "weight_global_scale": "F32"},
        ),
        "int4": ("compressed-tensors", {"weight_packed": "I32", "weight_scale": "BF16"}),
        "int2": (None, {"weight": "F32"}),
    }
    for precision, (method, dtypes) in expected.items():
        directory = tiny_dirs[precision]
        config = json.loads((directory / "config.json").read_text())
        assert (config.get("quantization_config") or {}).get("quant_method") == method
        assert config["quantgate_quantization"]["scheme"] == precision
        assert config["quantgate_quantization"]["num_quantized_tensors"] == 14
        assert (directory / "chat_template.jinja").exists()
        with safe_open(directory / "model.safetensors", "pt") as f:
            names = list(f.keys())
            for name in names:
                if ".layers.0.mlp.down_proj." in name and name.rsplit(".", 1)[1] in dtypes:
                    assert f.get_slice(name).get_dtype() == dtypes[name.rsplit(".", 1)[1]]
            embed = f.get_slice("model.embed_tokens.weight").get_dtype()
        assert embed == ("F32" if precision == "int2" else "BF16")
        assert not any(n.startswith("lm_head") for n in names)  # tied to the embeddings
    errors = {
        p: json.loads((tiny_dirs[p] / "config.json").read_text())["quantgate_quantization"][
            "mean_relative_weight_error"
        ]
        for p in PRECISIONS[1:]
    }
    assert errors["fp8"] < errors["nvfp4"] < errors["int4"] < errors["int2"]
    manifest = json.loads((tiny_dirs["bf16"].parent / "manifest.json").read_text())
    assert set(manifest["formats"]) == set(PRECISIONS[1:]) and manifest["held_out_questions"]


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
