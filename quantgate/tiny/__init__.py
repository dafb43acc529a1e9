"""The embedded default model: a tiny Qwen3 checkpoint the project builds offline
(:mod:`quantgate.tiny.model`) and its quantized copies (:mod:`quantgate.tiny.quantize`).

A suite names it with ``tiny://<precision>`` checkpoints (``bf16``, and the real-format ``fp8``,
``nvfp4``, ``int4`` copies plus the planted broken ``int2``); the model is trained on a train split
of the questions of the suite's tasks (their ``data_files.test``), the rest held out. Every engine
serves the same directory: ``transformers serve`` on a CPU loads the quantized formats through
transformers' own integrations (no dequantized twin is needed), vLLM with its kernels. A
baseline's identity carries the build key without
library versions (:func:`revision`), which covers :data:`quantgate.tiny.model.RECIPE_VERSION`,
bumped by hand when the recipe changes, and the question files — never the source bytes.

Importing this package is cheap; torch is imported only when a model is built or keyed.
"""

from __future__ import annotations

from pathlib import Path

SCHEME = "tiny://"


def is_tiny(checkpoint: str) -> bool:
    return checkpoint.startswith(SCHEME)


def question_files(suite) -> list[Path]:
    """The questions of the suite's tasks (their test data files): the tiny model's train split
    and held-out items come from them."""
    files = sorted(
        {
            suite.resolve_path(p)
            for t in suite.tasks.values()
            for split, p in t.data_files.items()
            if split == "test"
        }
    )
    if not files:
        raise ValueError(
            f"{suite.path}: a tiny:// checkpoint needs tasks with data_files.test "
            "(the questions the tiny model is trained on)"
        )
    return files


def revision(suite, precision: str) -> str | None:
    """What pins a checkpoint's weights beyond its name: the tiny model's build key without
    library versions (hub ids and paths: None)."""
    if not is_tiny(suite.precisions[precision].checkpoint):
        return None
    from quantgate.tiny.model import checkpoint_cache_key

    return checkpoint_cache_key(question_files(suite), with_versions=False)


def checkpoint_dir(suite, precision: str, cache_dir: Path) -> Path:
    """The built checkpoint of a ``tiny://<variant>`` precision (built under ``cache_dir/tiny``
    on first use)."""
    from quantgate.tiny.model import PRECISIONS, ensure_tiny_checkpoints

    checkpoint = suite.precisions[precision].checkpoint
    variant = checkpoint.removeprefix(SCHEME)
    if variant not in PRECISIONS:
        raise ValueError(
            f"{suite.path}: precisions.{precision}.checkpoint: found "
            f"{checkpoint!r}; expected tiny:// followed by one of {PRECISIONS}"
        )
    return ensure_tiny_checkpoints(Path(cache_dir) / "tiny", question_files(suite))[variant]
