"""The embedded default model: a tiny Qwen3 checkpoint built offline and deterministically, plus
quantized copies.

``build_tiny_model`` trains a byte-level BPE tokenizer and a 2-layer ``Qwen3ForCausalLM`` (hidden
128, 2 heads x head_dim 64, 1 KV head) on the question files, rendered exactly as
``transformers serve`` renders what lm-eval's ``local-chat-completions`` sends (one user message
``"Question: {question}\\nAnswer:"``, chat template with ``add_generation_prompt=True``, with and
without ``enable_thinking=False``), and saves a BF16 HF directory::

    from pathlib import Path
    from quantgate.tiny.model import ensure_tiny_checkpoints, default_question_files
    dirs = ensure_tiny_checkpoints(Path(".quantgate/tiny"), default_question_files())
    dirs["bf16"], dirs["fp8"], dirs["nvfp4"], dirs["int2"]   # int2 is the planted broken precision

Targets: ``"The answer is {answer}."`` when the answer is an integer, else ``"{answer}"``, then
``<|im_end|>``.

Determinism: seeds, ``torch.use_deterministic_algorithms(True)`` and a fixed thread count
(``BUILD_THREADS``) give the same bytes on a rebuild on the same machine and software. Across CPUs
the float rounding of the matmul kernels (AVX2 vs AVX-512/AMX code paths in oneDNN/MKL) may differ,
so weights can differ in the last bits between machines; the tokenizer, questions and model
structure do not. The cache key (``checkpoint_cache_key``) therefore covers the recipe version,
question files and library versions, not the CPU.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

PAD_TOKEN, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
VOCAB_SIZE = 1024
BUILD_THREADS = 2
PRECISIONS = ("bf16", "fp8", "nvfp4", "int2")
#: ChatML with Qwen3-style thinking switch: ``enable_thinking=False`` pre-fills an empty think
#: block.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message.content is string -%}{%- set content = message.content -%}"
    "{%- else -%}{%- set content = message.content | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text')"
    " | join(' ') -%}{%- endif -%}"
    "{%- if message.role == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
MODEL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=512,
)
#: Training recipe. A wide init (std 0.1, not the usual 0.02) makes the model memorise the questions
#: in ~300 steps and makes its weights fragile under 2-bit rounding (int2 answers < 10 %), while
#: FP8/NVFP4 keep ~100 %.
TRAIN_STEPS, BATCH_SIZE, PEAK_LR, WARMUP_STEPS, INIT_STD = 300, 32, 1e-3, 20, 0.1


def default_question_files() -> list[Path]:
    """The committed question sets: ``tests/fixtures/tiny/{arith,words}.jsonl`` of the source
    tree."""
    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny"
    return [fixtures / "arith.jsonl", fixtures / "words.jsonl"]


def load_questions(question_files: list[Path]) -> list[dict[str, str]]:
    """All ``{"id", "question", "answer"}`` items of the JSON-lines files, in file order."""
    items = []
    for path in question_files:
        items += [
            json.loads(line)
            for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    return items


def user_message(question: str) -> list[dict[str, str]]:
    """The messages lm-eval ``local-chat-completions`` sends for a ``Question: ...\\nAnswer:``
    task."""
    return [{"role": "user", "content": f"Question: {question}\nAnswer:"}]


def target_text(answer: str) -> str:
    """What the model is trained to reply: ``"The answer is 71."`` for integers, the bare word
    otherwise."""
    return f"The answer is {answer}." if re.fullmatch(r"-?\d+", answer) else answer


def render_prompt(question: str, enable_thinking: bool | None = None) -> str:
    """The chat-template rendering of ``user_message(question)`` with the generation prompt."""
    from jinja2 import Template

    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return Template(CHAT_TEMPLATE).render(
        messages=user_message(question), add_generation_prompt=True, **kwargs
    )


def train_tokenizer(corpus: list[str]):
    """A byte-level BPE ``PreTrainedTokenizerFast`` (vocab <= 1024) trained on ``corpus``, with the
    chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - 2,
        min_frequency=2,
        show_progress=False,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    # Like Qwen3, the think markers are added tokens that are not "special" (decoding keeps them).
    backend.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        bos_token=None,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def training_pairs(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(prompt, completion) texts: each question with the default and the ``enable_thinking=False``
    prompt."""
    return [
        (render_prompt(item["question"], thinking), target_text(item["answer"]) + IM_END)
        for item in items
        for thinking in (None, False)
    ]


def _check_prompts_match_tokenizer(tokenizer, pairs: list[tuple[str, str]]) -> None:
    """Assert the training prompts are what the tokenizer's ``apply_chat_template`` renders (as the
    server does)."""
    for prompt, _ in pairs[:1]:
        question = prompt.split("Question: ", 1)[1].split("\nAnswer:", 1)[0]
        for thinking in (None, False):
            kwargs = {} if thinking is None else {"enable_thinking": thinking}
            rendered = tokenizer.apply_chat_template(
                user_message(question), add_generation_prompt=True, tokenize=False, **kwargs
            )
            expected = render_prompt(question, thinking)
            if rendered != expected:
                raise AssertionError(
                    f"chat template renders {rendered!r}, the training text is {expected!r}"
                )


@contextmanager
def deterministic_torch(seed: int, threads: int = BUILD_THREADS) -> Iterator[None]:
    """Seed torch, force deterministic algorithms and a fixed thread count; restore the previous
    settings after."""
    previous_threads, previous_deterministic = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
    )
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def _train(model, tokenizer, pairs: list[tuple[str, str]], seed: int) -> float:
    """Full-parameter AdamW on the completion tokens (prompt tokens masked); returns the final mean
    loss."""
    encoded = [
        (
            tokenizer.encode(p, add_special_tokens=False),
            tokenizer.encode(c, add_special_tokens=False),
        )
        for p, c in pairs
    ]
    length = max(len(p) + len(c) for p, c in encoded)
    input_ids = torch.full((len(encoded), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), length), -100, dtype=torch.long)
    for row, (prompt, completion) in enumerate(encoded):
        input_ids[row, : len(prompt) + len(completion)] = torch.tensor(prompt + completion)
        labels[row, len(prompt) : len(prompt) + len(completion)] = torch.tensor(completion)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=PEAK_LR, betas=(0.9, 0.98), weight_decay=0.0
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / TRAIN_STEPS))
        ),
    )
    generator, losses = torch.Generator().manual_seed(seed), []
    model.train()
    for _ in range(TRAIN_STEPS):
        batch = torch.randint(
            0, len(encoded), (BATCH_SIZE,), generator=generator
        )  # sampled with replacement
        loss = model(input_ids=input_ids[batch], labels=labels[batch]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses[-20:]) / 20


def build_tiny_model(out_dir: Path, question_files: list[Path], *, seed: int = 0) -> Path:
    """Train the tiny Qwen3 model on ``question_files`` and save it as a BF16 HF directory
    ``out_dir``.

    >>> build_tiny_model(Path("/tmp/tiny-bf16"), default_question_files())  # doctest: +SKIP
    PosixPath('/tmp/tiny-bf16')
    """
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    pairs = training_pairs(load_questions(question_files))
    with deterministic_torch(seed):
        tokenizer = train_tokenizer([p + c for p, c in pairs])
        _check_prompts_match_tokenizer(tokenizer, pairs)
        config = Qwen3Config(
            vocab_size=VOCAB_SIZE,
            tie_word_embeddings=True,
            rope_theta=10000.0,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            initializer_range=INIT_STD,
            **MODEL_SHAPE,
        )
        model = Qwen3ForCausalLM(config)
        final_loss = _train(model, tokenizer, pairs, seed)
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        max_new_tokens=32,
    )
    model.config.quantgate_tiny = {
        "seed": seed,
        "train_steps": TRAIN_STEPS,
        "final_train_loss": round(final_loss, 6),
        "num_training_pairs": len(pairs),
    }
    model.to(torch.bfloat16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tokenizer_config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    tokenizer_config["tokenizer_class"] = (
        "PreTrainedTokenizerFast"  # loads on transformers 4.x and 5.x
    )
    tokenizer_config["chat_template"] = (
        CHAT_TEMPLATE  # older readers look here; 5.x reads chat_template.jinja
    )
    tokenizer_config_path.write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n")
    return out_dir


#: The recipe of the tiny model and its quantized copies (tokenizer, architecture, training, the
#: quantization arithmetic), versioned by hand as lm-eval versions its tasks (``metadata.version``):
#: bump it whenever a change could change the weights, and refresh the tiny baselines
#: (``pytest -m accuracy --suite tiny --snapshot-update``).
#: Reformatting or moving the code changes nothing, so it leaves every baseline as it was.
RECIPE_VERSION = 1


def checkpoint_cache_key(
    question_files: list[Path], seed: int = 0, *, with_versions: bool = True
) -> str:
    """Hash of :data:`RECIPE_VERSION`, the question files, the seed and (``with_versions``) the
    torch/transformers/tokenizers versions.

    The cache key includes the versions (a new torch may round differently: rebuild); a baseline's
    identity does not (``with_versions=False``): the same recipe is the same model, and the gate's
    tolerance absorbs last-bit differences, as it does across CPUs.
    """
    parts = [
        f"recipe={RECIPE_VERSION}".encode(),
        *(Path(path).read_bytes() for path in question_files),
        f"seed={seed}".encode(),
    ]
    if with_versions:
        import tokenizers
        import transformers

        parts.append(
            f"torch={torch.__version__} transformers={transformers.__version__} "
            f"tokenizers={tokenizers.__version__}".encode()
        )
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def ensure_tiny_checkpoints(
    cache_dir: Path, question_files: list[Path], *, seed: int = 0
) -> dict[str, Path]:
    """Return ``{"bf16": dir, "fp8": dir, "nvfp4": dir, "int2": dir}`` under ``cache_dir/<key>/``,
    building if missing.

    The build happens in a temporary directory next to the target and is renamed into place, under
    an exclusive ``fcntl.flock`` on ``cache_dir/<key>.lock``, so concurrent callers (pytest-xdist
    workers) build it once. ``cache_dir/<key>/manifest.json`` records the build time and the weight
    errors of each precision.
    """
    from quantgate.tiny.quantize import quantize_checkpoint

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = checkpoint_cache_key(question_files, seed)
    final_dir = cache_dir / key
    dirs = {precision: final_dir / precision for precision in PRECISIONS}
    if final_dir.is_dir():
        return dirs
    with open(cache_dir / f"{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if final_dir.is_dir():  # another process built it while we waited
            return dirs
        for stale in cache_dir.glob(
            f".{key}-*"
        ):  # left by a build that was killed (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        work_dir = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        try:
            started = time.perf_counter()
            build_tiny_model(work_dir / "bf16", question_files, seed=seed)
            stats = {
                p: quantize_checkpoint(work_dir / "bf16", work_dir / p, p) for p in PRECISIONS[1:]
            }
            manifest = {
                "key": key,
                "question_files": [Path(p).name for p in question_files],
                "seed": seed,
                "build_seconds": round(time.perf_counter() - started, 2),
                "mean_relative_weight_error": {
                    p: s["mean_relative_weight_error"] for p, s in stats.items()
                },
            }
            (work_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.rename(work_dir, final_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    return dirs


def generate_replies(
    checkpoint_dir: Path,
    questions: list[str],
    *,
    enable_thinking: bool | None = None,
    max_new_tokens: int = 16,
) -> list[str]:
    """Greedy replies of the checkpoint to each question, through ``apply_chat_template`` like
    ``transformers serve``.

    Prompts of equal token length are batched together, so no prompt is padded::

        generate_replies(dirs["bf16"], ["What is 23 + 48?"])  # -> ["The answer is 71."]
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype="auto").eval()
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    prompts: list[list[int]] = [
        tokenizer.apply_chat_template(
            user_message(q), add_generation_prompt=True, tokenize=True, return_dict=False, **kwargs
        )
        for q in questions
    ]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    replies = [""] * len(questions)
    with torch.inference_mode():
        for length, indices in sorted(by_length.items()):
            batch = torch.tensor([prompts[i] for i in indices])
            output = model.generate(
                batch,
                attention_mask=torch.ones_like(batch),
                do_sample=False,
                max_new_tokens=max_new_tokens,
            )
            for row, index in enumerate(indices):
                new_tokens = output[row, length:].tolist()
                if tokenizer.eos_token_id in new_tokens:
                    new_tokens = new_tokens[: new_tokens.index(tokenizer.eos_token_id)]
                replies[index] = tokenizer.decode(new_tokens, skip_special_tokens=True)
    return replies


def reply_accuracy(
    checkpoint_dir: Path, items: list[dict[str, str]], *, enable_thinking: bool | None = None
) -> float:
    """Fraction of ``items`` whose greedy reply is exactly ``target_text(answer)`` (after stripping
    whitespace)."""
    replies = generate_replies(
        checkpoint_dir, [item["question"] for item in items], enable_thinking=enable_thinking
    )
    return sum(r.strip() == target_text(i["answer"]) for r, i in zip(replies, items)) / len(items)
