"""The embedded default model: a tiny Qwen3 checkpoint built offline and deterministically, plus
quantized copies in the formats users gate.

``build_tiny_model`` trains a byte-level BPE tokenizer (digits split one per token, as Qwen's) and
a 2-layer ``Qwen3ForCausalLM`` (hidden 128, 2 heads x head_dim 64, 2 KV heads, MLP 384) on
questions rendered exactly as ``transformers serve`` renders what lm-eval's
``local-chat-completions`` sends (one user message ``"Question: {question}\\nAnswer:"``, chat
template with ``add_generation_prompt=True``, with and without ``enable_thinking=False``), and
saves a BF16 HF directory::

    from pathlib import Path
    from quantgate.tiny.model import ensure_tiny_checkpoints, default_question_files
    dirs = ensure_tiny_checkpoints(Path(".quantgate/tiny"), default_question_files())
    dirs["bf16"], dirs["fp8"], dirs["nvfp4"], dirs["int4"], dirs["int2"]

Targets: ``"The answer is {answer}."`` when the answer is an integer, else ``"{answer}"``, then
``<|im_end|>``.

**Why it is right on some items and wrong on others** (recipe version 2). A model that memorises
every question scores 100 % and its quantized copies flip nothing, which is not what a gate sees
on a real model. So:

- *A train split and held-out items.* Each question is in the train split when the SHA-256 of its
  text falls below :data:`TRAIN_FRACTION` (85 %; a property of the text, the same on every
  machine); the other ~15 % are never trained on. The held-out items would need generalisation
  the model cannot do in a 60-second build (the sum of two unseen numbers, the reverse of an
  opposite it learnt one way, an irregular plural it never saw): it answers them confidently
  wrong, with at most a lucky guess.
- *Deliberately under-trained.* 300 AdamW steps, and a fifth of every batch is *auxiliary* items
  of the same kinds that are not among the questions (:func:`auxiliary_items`: other sums,
  differences and products, other plurals, opposites, "what comes before"), which compete for the
  same capacity; word questions are sampled less often than arithmetic ones
  (:data:`WORD_SAMPLING_WEIGHT`). Most train-split items come out right with a wide margin, some
  barely right and some barely wrong: those borderline items are what a quantized copy flips, in
  both directions.
- *Heavy-tailed weights.* The decoder's Linear weights start from a Student-t distribution
  (:data:`INIT_TAIL_DF` degrees of freedom) scaled to std :data:`INIT_STD`, and 300 steps leave
  that shape in place. Pretrained LLM weights are heavy-tailed too (outlier weights and
  channels); it is what makes one scale per output channel (INT4 ``channel``) lose far more than
  NVFP4's 16-element blocks or FP8, and it makes the 4-level INT2 grid useless. With Gaussian
  weights the three formats would look alike.

On the 2-core CPU the baselines come from, BF16 scores 65-81 % per task; fp8 flips a handful of
items, nvfp4 a few more (both ways), int4 loses 11-32 pp, int2 everything (README, "What the tiny
model shows, honestly"). The build takes about 53 s there (``tests/tiny/test_build_time.py``).

Shape: every quantized matrix (q/k/v/o, gate/up/down) has both dimensions a multiple of 128, as
vLLM's FP8 block kernels (128 x 128 blocks), Marlin (N % 64, K % 128) and Machete (K % 64,
N % 128) want; head_dim 64 is one vLLM's attention backends take (see :mod:`quantize`).

Determinism: seeds, ``torch.use_deterministic_algorithms(True)`` and a fixed thread count
(``BUILD_THREADS``) give the same bytes on a rebuild on the same machine and software. Across CPUs
the float rounding of the matmul kernels (AVX2 vs AVX-512/AMX code paths in oneDNN/MKL) may differ,
so weights can differ in the last bits between machines, and a borderline item may land on the
other side; the tokenizer, questions, split and model structure do not. The cache key
(``checkpoint_cache_key``) therefore covers the recipe version, question files and library
versions, not the CPU.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
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
#: The built precisions: the BF16 original, real-format quantized copies (fp8: the layout of
#: Qwen/Qwen3-32B-FP8; nvfp4: compressed-tensors nvfp4-pack-quantized; int4: compressed-tensors
#: pack-quantized, one scale per output channel) and int2, the planted broken precision.
PRECISIONS = ("bf16", "fp8", "nvfp4", "int4", "int2")
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
#: Every quantized matrix is 128 x 128, 128 x 384 or 384 x 128 (multiples of 128 both ways).
MODEL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=512,
)
#: Training recipe (module docstring): AdamW steps, batch, peak learning rate, warm-up, the std
#: of every initial weight, the Student-t degrees of freedom of the decoder Linear weights.
TRAIN_STEPS, BATCH_SIZE, PEAK_LR, WARMUP_STEPS = 300, 32, 1.5e-3, 20
INIT_STD, INIT_TAIL_DF = 0.1, 3
#: The share of the questions trained on (chosen by the SHA-256 of the question text).
TRAIN_FRACTION = 0.85
#: The share of each batch drawn from :func:`auxiliary_items`.
AUXILIARY_SHARE = 0.2
#: How often a word question of the train split is drawn relative to an arithmetic one.
WORD_SAMPLING_WEIGHT = 0.5
#: How many auxiliary sums and differences (each) :func:`auxiliary_items` draws.
AUXILIARY_SUMS = 200


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


def in_train_split(question: str) -> bool:
    """Whether the recipe trains on this question: the SHA-256 of its text, read as a fraction,
    is below :data:`TRAIN_FRACTION` (the same answer on every machine)."""
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < TRAIN_FRACTION


def train_split(items: list[dict[str, str]]) -> tuple[list[dict], list[dict]]:
    """``(trained, held_out)``: the items the model is trained on, and the others."""
    trained = [item for item in items if in_train_split(item["question"])]
    held_out = [item for item in items if not in_train_split(item["question"])]
    return trained, held_out


#: Words for :func:`auxiliary_items`, none of them among the committed questions: regular and
#: irregular plurals (the same families as the questions'), opposite pairs, the calendar.
AUXILIARY_PLURALS = (
    "car cars|pen pens|cup cups|bird birds|hat hats|bag bags|door doors|lamp lamps|shoe shoes|"
    "ring rings|coin coins|rock rocks|star stars|ship ships|road roads|hand hands|girl girls|"
    "boy boys|key keys|toy toys|song songs|bell bells|desk desks|chair chairs|plate plates|"
    "cake cakes|rose roses|stone stones|horse horses|table tables|apple apples|river rivers|"
    "window windows|garden gardens|pencil pencils|flower flowers|doctor doctors|fox foxes|"
    "bush bushes|watch watches|match matches|brush brushes|kiss kisses|class classes|"
    "dress dresses|wish wishes|peach peaches|beach beaches|bench benches|lunch lunches|"
    "party parties|lady ladies|puppy puppies|cherry cherries|family families|penny pennies|"
    "berry berries|country countries|body bodies|half halves|calf calves|shelf shelves|"
    "thief thieves|loaf loaves|elf elves|scarf scarves|fireman firemen|postman postmen|"
    "snowman snowmen|gentleman gentlemen|tomato tomatoes|echo echoes|deer deer|moose moose|"
    "salmon salmon|trout trout|louse lice|fungus fungi|nucleus nuclei|radius radii"
)
AUXILIARY_OPPOSITES = (
    "wide narrow|near far|cheap expensive|sweet sour|above below|give take|come go|start finish|"
    "love hate|laugh cry|awake asleep|alive dead|smooth rough|sharp dull|tight loose|"
    "deep shallow|safe dangerous|friend enemy|question answer|arrive leave|always never|"
    "entrance exit|add subtract|before after|sick healthy|noisy silent|import export|"
    "mother father|king queen|boy girl"
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def auxiliary_items(items: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """Questions of the same kinds as ``items`` that are not among them: sums and differences of
    two numbers 1-99 (:data:`AUXILIARY_SUMS` each), every product of 2-12, plurals and opposites
    of other words (:data:`AUXILIARY_PLURALS`, :data:`AUXILIARY_OPPOSITES`, both ways), and "what
    comes before" each weekday and month."""
    questions = {item["question"] for item in items}
    rng, made, seen = random.Random(seed), [], set()

    def add(question: str, answer: str) -> None:
        if question not in questions and question not in seen:
            seen.add(question)
            made.append({"question": question, "answer": answer})

    for op, fn in (("+", lambda a, b: a + b), ("-", lambda a, b: a - b)):
        target = len(made) + AUXILIARY_SUMS
        while len(made) < target:
            left, right = rng.randint(1, 99), rng.randint(1, 99)
            add(f"What is {left} {op} {right}?", str(fn(left, right)))
    for left in range(2, 13):
        for right in range(2, 13):
            add(f"What is {left} * {right}?", str(left * right))
    for pair in AUXILIARY_PLURALS.split("|"):
        word, plural = pair.split()
        add(f"What is the plural of {word}?", plural)
    for pair in AUXILIARY_OPPOSITES.split("|"):
        word, opposite = pair.split()
        add(f"What is the opposite of {word}?", opposite)
        add(f"What is the opposite of {opposite}?", word)
    for names, kind in ((WEEKDAYS, "day"), (MONTHS, "month")):
        for index, name in enumerate(names):
            add(f"What {kind} comes before {name}?", names[index - 1])
    return made


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
    """A byte-level BPE ``PreTrainedTokenizerFast`` (vocab <= 1024, digits one per token, as in
    Qwen's pre-tokenizer) trained on ``corpus``, with the chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
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


def heavy_tailed_init_(model, seed: int) -> None:
    """Re-draw the decoder's Linear weights from a Student-t distribution with
    :data:`INIT_TAIL_DF` degrees of freedom (a normal over the root of a chi-square), scaled to std
    :data:`INIT_STD`; embeddings and norms keep their initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".layers." in name and name.endswith("proj.weight"):
                normal = torch.randn(parameter.shape, generator=generator)
                chi2 = (
                    torch.randn((INIT_TAIL_DF, *parameter.shape), generator=generator) ** 2
                ).sum(0)
                t = normal / torch.sqrt(chi2 / INIT_TAIL_DF)
                parameter.copy_(t / t.std() * INIT_STD)


def _encode(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels (completion tokens only; -100 elsewhere), right-padded."""
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
    return input_ids, labels


def _train(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    weights: list[float],
    auxiliary: list[tuple[str, str]],
    seed: int,
) -> float:
    """Full-parameter AdamW on the completion tokens (prompt tokens masked): each batch draws
    ``BATCH_SIZE * (1 - AUXILIARY_SHARE)`` of ``pairs`` (with ``weights``) and the rest of
    ``auxiliary``, with replacement; returns the final mean loss."""
    train_ids, train_labels = _encode(tokenizer, pairs)
    aux_ids, aux_labels = _encode(tokenizer, auxiliary)
    width = max(train_ids.shape[1], aux_ids.shape[1])

    def widen(tensor: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

    pad = tokenizer.pad_token_id
    train_ids, aux_ids = widen(train_ids, pad), widen(aux_ids, pad)
    train_labels, aux_labels = widen(train_labels, -100), widen(aux_labels, -100)
    sampling = torch.tensor(weights, dtype=torch.float)
    n_aux = round(BATCH_SIZE * AUXILIARY_SHARE)
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
        rows = torch.multinomial(
            sampling, BATCH_SIZE - n_aux, replacement=True, generator=generator
        )
        aux_rows = torch.randint(0, len(aux_ids), (n_aux,), generator=generator)
        ids = torch.cat([train_ids[rows], aux_ids[aux_rows]])
        labels = torch.cat([train_labels[rows], aux_labels[aux_rows]])
        used = int((labels != -100).any(0).nonzero().max()) + 1  # drop all-padding columns
        loss = model(input_ids=ids[:, :used], labels=labels[:, :used]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses[-20:]) / 20


def build_tiny_model(out_dir: Path, question_files: list[Path], *, seed: int = 0) -> Path:
    """Train the tiny Qwen3 model on the train split of ``question_files`` (and the auxiliary
    items) and save it as a BF16 HF directory ``out_dir``.

    >>> build_tiny_model(Path("/tmp/tiny-bf16"), default_question_files())  # doctest: +SKIP
    PosixPath('/tmp/tiny-bf16')
    """
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    items = load_questions(question_files)
    trained, held_out = train_split(items)
    auxiliary = auxiliary_items(items, seed)
    pairs = training_pairs(trained)
    weights = [
        1.0 if re.fullmatch(r"-?\d+", item["answer"]) else WORD_SAMPLING_WEIGHT
        for item in trained
        for _ in (None, False)  # training_pairs' two prompts per item
    ]
    auxiliary_pairs = training_pairs(auxiliary)
    with deterministic_torch(seed):
        # The tokenizer sees every question (held-out ones too, as a real tokenizer's corpus
        # holds the benchmark's words): the held-out answers are no unknown tokens.
        tokenizer = train_tokenizer([p + c for p, c in training_pairs(items) + auxiliary_pairs])
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
        heavy_tailed_init_(model, seed)
        final_loss = _train(model, tokenizer, pairs, weights, auxiliary_pairs, seed)
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        max_new_tokens=32,
    )
    model.config.quantgate_tiny = {
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "train_steps": TRAIN_STEPS,
        "final_train_loss": round(final_loss, 6),
        "num_trained_questions": len(trained),
        "num_held_out_questions": len(held_out),
        "num_auxiliary_questions": len(auxiliary),
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
#: 2: a train split with held-out questions, auxiliary items, heavy-tailed initial weights, digits
#: one per token, the vLLM-friendly shape (2 KV heads), real-format fp8/nvfp4/int4 copies.
RECIPE_VERSION = 2


def checkpoint_cache_key(
    question_files: list[Path], seed: int = 0, *, with_versions: bool = True
) -> str:
    """Hash of :data:`RECIPE_VERSION`, the question files, the seed and (``with_versions``) the
    torch/transformers/tokenizers/compressed-tensors versions.

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
        import compressed_tensors
        import tokenizers
        import transformers

        parts.append(
            f"torch={torch.__version__} transformers={transformers.__version__} "
            f"tokenizers={tokenizers.__version__} "
            f"compressed-tensors={compressed_tensors.__version__}".encode()
        )
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def ensure_tiny_checkpoints(
    cache_dir: Path, question_files: list[Path], *, seed: int = 0
) -> dict[str, Path]:
    """Return ``{precision: dir}`` for every one of :data:`PRECISIONS` under ``cache_dir/<key>/``,
    building if missing.

    The build happens in a temporary directory next to the target and is renamed into place, under
    an exclusive ``fcntl.flock`` on ``cache_dir/<key>.lock``, so concurrent callers (pytest-xdist
    workers) build it once. ``cache_dir/<key>/manifest.json`` records the build time (in all and
    per step), the train split and the weight errors of each precision.
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
            seconds, stats = {"bf16": time.perf_counter() - started}, {}
            for precision in PRECISIONS[1:]:
                begun = time.perf_counter()
                stats[precision] = quantize_checkpoint(
                    work_dir / "bf16", work_dir / precision, precision
                )
                seconds[precision] = time.perf_counter() - begun
            trained, held_out = train_split(load_questions(question_files))
            manifest = {
                "key": key,
                "recipe_version": RECIPE_VERSION,
                "question_files": [Path(p).name for p in question_files],
                "seed": seed,
                "build_seconds": round(time.perf_counter() - started, 2),
                "step_seconds": {p: round(t, 2) for p, t in seconds.items()},
                "held_out_questions": [item["id"] for item in held_out],
                "num_trained_questions": len(trained),
                "formats": {p: s["format"] for p, s in stats.items()},
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
