"""Model folders for the H200 benchmark, built here (CPU) and carried to the device:

    python benchmarks/make_dummy_models.py            # -> .device-kit/models/ (~2 MB)

- ``qwen3-32b-dummy/``: the public Qwen3-32B ``config.json``
  (``../shared/device/qwen3-32b-config.json``) beside the tiny model's tokenizer; vLLM serves
  it with ``--load-format dummy`` (random BF16 weights of the real shape, ~61 GiB);
- ``qwen3-32b-fp8-block-dummy/``: the same with Qwen3-32B-FP8's ``quantization_config``
  (``quant_method: fp8``, ``weight_block_size: [128, 128]``): the suite's fp8 checkpoint format,
  dummy weights;
- ``tiny-bf16/``: the tiny suite's BF16 checkpoint (real trained weights; built into the cache
  on first use, ~15 s): the noise floor on a model that emits real tokens.

``.device-kit/`` is git-excluded by the kit's build script, so the folders travel only when a
device call carries them (``carry: [".device-kit/models"]``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO.parent / "shared" / "device" / "qwen3-32b-config.json"
# Qwen/Qwen3-32B-FP8's config.json quantization_config (the hub checkpoint the suite gates)
FP8_BLOCK = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128],
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def tiny_bf16(cache: Path) -> Path:
    from quantgate.suites import load_suite
    from quantgate.tiny import question_files
    from quantgate.tiny.model import ensure_tiny_checkpoints

    suite = load_suite(REPO / "tests" / "accuracy" / "suites" / "tiny.yaml")
    return ensure_tiny_checkpoints(cache, question_files(suite))["bf16"]


def dummy(out: Path, config: dict, tokenizer_dir: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy2(tokenizer_dir / name, out / name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".device-kit" / "models")
    ap.add_argument("--config", type=Path, default=CONFIG, help="the Qwen3-32B config.json")
    ap.add_argument("--cache", type=Path, default=REPO / ".quantgate" / "cache" / "tiny")
    args = ap.parse_args(argv)
    config = json.loads(args.config.read_text())
    bf16 = tiny_bf16(args.cache)
    tiny = args.out / "tiny-bf16"
    if tiny.exists():
        shutil.rmtree(tiny)
    shutil.copytree(bf16, tiny)
    made = [
        tiny,
        dummy(args.out / "qwen3-32b-dummy", config, bf16),
        dummy(
            args.out / "qwen3-32b-fp8-block-dummy",
            {**config, "quantization_config": FP8_BLOCK},
            bf16,
        ),
    ]
    for path in made:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"{path}  ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
