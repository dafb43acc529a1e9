"""Real weight-quantization arithmetic (FP8 E4M3, NVFP4, INT2) and "fake-quantized" checkpoints.

Schemes (all applied to a 2-D weight ``w`` of shape ``[out_features, in_features]``):

* **FP8 E4M3, per output channel** (``quantize_fp8``): ``scale[o] = amax(|w[o, :]|) / 448`` (FP32)
  and ``codes = round_to_e4m3(w / scale)`` via ``torch.float8_e4m3fn`` (round-to-nearest-even), so
  each row's largest magnitude maps to 448, the largest finite E4M3 value.
* **NVFP4** (``quantize_nvfp4``): E2M1 values (0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6) in 16-element
  blocks along the input dim, one E4M3 scale per block and one FP32 per-tensor scale::

      global_scale   = amax(|w|) / (448 * 6)
      block_scale[b] = round_to_e4m3(amax(|w[b]|) / (6 * global_scale))
      codes[b]       = round_to_e2m1(w[b] / (block_scale[b] * global_scale))

* **INT2, symmetric per output channel** (``quantize_int2``), the deliberately broken precision: 4
  evenly spaced levels ``{-3, -1, 1, 3} * amax/3`` (no zero), code ``q`` in ``{-2, -1, 0, 1}``
  meaning ``(2q + 1) * amax/3``.

Every ``quantize_*`` returns a dataclass of codes and scales; ``dequantize`` gives the values they
stand for, in FP32::

    >>> w = torch.randn(8, 32)
    >>> q = quantize_nvfp4(w)
    >>> q.codes.shape, q.block_scales.dtype, q.block_scales.shape
    (torch.Size([8, 32]), torch.float8_e4m3fn, torch.Size([8, 2]))
    >>> relative_error(w, dequantize(q)) < 0.2
    True

``quantize_checkpoint(src_dir, dst_dir, "nvfp4")`` writes an HF checkpoint whose decoder-layer
Linear weights are the exactly dequantized values (stored in FP32, so nothing is rounded again),
which any CPU server loads as a plain model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

E4M3_MAX = 448.0
E2M1_MAX = 6.0
#: E2M1 magnitudes, indexed by the 3-bit code (exponent and mantissa bits) of the value.
E2M1_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
NVFP4_BLOCK_SIZE = 16
SCHEMES = ("fp8", "nvfp4", "int2")
#: Parameter-name suffixes of the Linear layers a scheme replaces (decoder layers only).
QUANTIZED_LINEAR_SUFFIXES = (
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


@dataclass(frozen=True)
class Fp8Weight:
    """FP8 E4M3 codes (``float8_e4m3fn``, shape of the weight) and FP32 per-row scales
    (``[out, 1]``)."""

    codes: torch.Tensor
    scales: torch.Tensor


@dataclass(frozen=True)
class Nvfp4Weight:
    """NVFP4: E2M1 codes as uint8 nibbles (bit 3 = sign, bits 0-2 = index into ``E2M1_GRID``), shape
    of the weight; E4M3 block scales ``[out, in/16]``; an FP32 0-d ``global_scale``."""

    codes: torch.Tensor
    block_scales: torch.Tensor
    global_scale: torch.Tensor


@dataclass(frozen=True)
class Int2Weight:
    """INT2 codes in ``{-2, -1, 0, 1}`` (int8, shape of the weight) and FP32 per-row steps
    (``[out, 1]``)."""

    codes: torch.Tensor
    scales: torch.Tensor


QuantizedWeight = Fp8Weight | Nvfp4Weight | Int2Weight


def round_to_e4m3(values: torch.Tensor) -> torch.Tensor:
    """Round FP32 ``values`` to E4M3 (saturating at ±448), returned as ``float8_e4m3fn``."""
    return values.float().clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def round_to_e2m1(values: torch.Tensor) -> torch.Tensor:
    """Round ``values`` to the nearest E2M1 value (ties to even mantissa, saturating at ±6); return
    uint8 codes.

    >>> e2m1_code_values(round_to_e2m1(torch.tensor([0.25, 0.3, -1.25, 2.5, 5.0, 7.0])))
    tensor([ 0.0000,  0.5000, -1.0000,  2.0000,  4.0000,  6.0000])
    """
    grid = torch.tensor(E2M1_GRID, dtype=torch.float32)
    magnitudes = values.float().abs().clamp(max=E2M1_MAX)
    midpoints = (grid[1:] + grid[:-1]) / 2
    index = torch.searchsorted(
        midpoints, magnitudes, right=False
    )  # a tie picks the lower neighbour ...
    tie_to_odd = (index < len(E2M1_GRID) - 1) & (
        magnitudes == midpoints[index.clamp(max=len(midpoints) - 1)]
    )
    index = torch.where(
        tie_to_odd & (index % 2 == 1), index + 1, index
    )  # ... unless its mantissa bit is odd
    sign = (values < 0) & (index > 0)
    return (index | (sign.to(torch.int64) << 3)).to(torch.uint8)


def e2m1_code_values(codes: torch.Tensor) -> torch.Tensor:
    """The FP32 values of uint8 E2M1 codes."""
    grid = torch.tensor(E2M1_GRID, dtype=torch.float32)
    codes = codes.to(torch.int64)
    magnitude = grid[codes & 0b111]
    return torch.where((codes & 0b1000) != 0, -magnitude, magnitude)


def _row_amax(weight: torch.Tensor) -> torch.Tensor:
    return weight.float().abs().amax(dim=1, keepdim=True)


def quantize_fp8(weight: torch.Tensor) -> Fp8Weight:
    """FP8 E4M3 with one FP32 scale per output channel (``scale = amax / 448``)."""
    scales = _row_amax(weight) / E4M3_MAX
    safe_scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return Fp8Weight(codes=round_to_e4m3(weight.float() / safe_scales), scales=scales)


def quantize_nvfp4(weight: torch.Tensor, block_size: int = NVFP4_BLOCK_SIZE) -> Nvfp4Weight:
    """NVFP4: E2M1 codes in ``block_size`` blocks along the input dim, E4M3 block scales, one FP32
    global scale."""
    out_features, in_features = weight.shape
    if in_features % block_size:
        raise ValueError(
            f"in_features={in_features} is not a multiple of the block size {block_size}"
        )
    blocks = weight.float().reshape(out_features, in_features // block_size, block_size)
    global_scale = weight.float().abs().amax() / (E4M3_MAX * E2M1_MAX)
    safe_global = global_scale if global_scale > 0 else torch.tensor(1.0)
    block_scales = round_to_e4m3(blocks.abs().amax(dim=2) / (E2M1_MAX * safe_global))
    divisor = block_scales.float().unsqueeze(2) * safe_global
    divisor = torch.where(
        divisor > 0, divisor, torch.ones_like(divisor)
    )  # all-zero (or underflowed) block
    codes = round_to_e2m1(blocks / divisor).reshape(out_features, in_features)
    return Nvfp4Weight(
        codes=codes, block_scales=block_scales, global_scale=global_scale.reshape(())
    )


def quantize_int2(weight: torch.Tensor) -> Int2Weight:
    """Symmetric per-channel INT2: levels ``(2q + 1) * step`` for ``q`` in ``{-2, -1, 0, 1}``,
    ``step = amax / 3``."""
    scales = _row_amax(weight) / 3
    safe_scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.floor(weight.float() / safe_scales / 2).clamp(
        -2, 1
    )  # nearest of the odd multiples of step
    return Int2Weight(codes=codes.to(torch.int8), scales=scales)


def quantize(weight: torch.Tensor, scheme: str) -> QuantizedWeight:
    """Quantize a 2-D weight with ``scheme`` in ``SCHEMES``."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    quantizers = {"fp8": quantize_fp8, "nvfp4": quantize_nvfp4, "int2": quantize_int2}
    if scheme not in quantizers:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    return quantizers[scheme](weight)


def dequantize(quantized: QuantizedWeight) -> torch.Tensor:
    """The FP32 values a quantized weight represents (what a kernel computes with after scaling)."""
    if isinstance(quantized, Fp8Weight):
        return quantized.codes.float() * quantized.scales
    if isinstance(quantized, Nvfp4Weight):
        out_features, in_features = quantized.codes.shape
        num_blocks = quantized.block_scales.shape[1]
        values = e2m1_code_values(quantized.codes).reshape(
            out_features, num_blocks, in_features // num_blocks
        )
        scale = quantized.block_scales.float().unsqueeze(2) * quantized.global_scale
        return (values * scale).reshape(out_features, in_features)
    if isinstance(quantized, Int2Weight):
        return (2 * quantized.codes.float() + 1) * quantized.scales
    raise TypeError(f"not a quantized weight: {type(quantized).__name__}")


def relative_error(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """``||reference - approximation||_F / ||reference||_F`` in FP32."""
    reference = reference.float()
    return float((reference - approximation.float()).norm() / reference.norm().clamp(min=1e-30))


def scheme_description(scheme: str) -> dict[str, object]:
    """The ``quantgate_quantization`` description of a scheme (format, granularity, scale
    dtypes)."""
    descriptions: dict[str, dict[str, object]] = {
        "fp8": {
            "format": "float8_e4m3fn",
            "granularity": "per-output-channel",
            "scale_dtype": "float32",
            "scale_rule": "amax/448",
        },
        "nvfp4": {
            "format": "nvfp4 (e2m1)",
            "granularity": "block",
            "block_size": NVFP4_BLOCK_SIZE,
            "block_axis": "input",
            "block_scale_dtype": "float8_e4m3fn",
            "global_scale_dtype": "float32",
            "scale_rule": "global=amax/(448*6); block=round_e4m3(block_amax/(6*global))",
        },
        "int2": {
            "format": "int2 symmetric, levels (2q+1)*amax/3, q in -2..1",
            "granularity": "per-output-channel",
            "scale_dtype": "float32",
        },
    }
    return {
        "scheme": scheme,
        **descriptions[scheme],
        "storage": "dequantized float32 (fake-quantized)",
        "quantized_modules": "decoder-layer Linear weights (q/k/v/o, gate/up/down)",
        "kept_modules": "embeddings, norms, lm_head",
    }


def is_quantized_linear(name: str) -> bool:
    """Whether the checkpoint tensor ``name`` is a decoder-layer Linear weight that a scheme
    replaces."""
    return ".layers." in name and name.endswith(QUANTIZED_LINEAR_SUFFIXES)


def quantize_checkpoint(src_dir: Path, dst_dir: Path, scheme: str) -> dict[str, object]:
    """Write ``dst_dir``: a copy of the HF checkpoint ``src_dir`` with decoder Linear weights
    fake-quantized.

    All tensors are stored in FP32 (the dequantized values are exact there; the others are widened
    losslessly), the config's ``dtype`` becomes ``float32`` and gains a ``quantgate_quantization``
    entry with the scheme description and error statistics, which are also returned::

        stats = quantize_checkpoint(Path("tiny/bf16"), Path("tiny/nvfp4"), "nvfp4")
        stats["mean_relative_weight_error"]  # e.g. 0.09
    """
    from safetensors.torch import load_file, save_file

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    weight_files = sorted(src_dir.glob("*.safetensors"))
    if not weight_files:
        raise FileNotFoundError(f"no *.safetensors in {src_dir}")
    dst_dir.mkdir(parents=True, exist_ok=True)
    errors: dict[str, float] = {}
    for weight_file in weight_files:
        tensors = load_file(weight_file)
        converted: dict[str, torch.Tensor] = {}
        for name in sorted(tensors):
            tensor = tensors[name].float()
            if is_quantized_linear(name):
                dequantized = dequantize(quantize(tensor, scheme))
                errors[name] = relative_error(tensor, dequantized)
                tensor = dequantized
            converted[name] = tensor.contiguous()
        save_file(converted, dst_dir / weight_file.name, metadata={"format": "pt"})
    for path in sorted(src_dir.iterdir()):
        if path.is_file() and path.suffix != ".safetensors" and path.name != "config.json":
            shutil.copyfile(path, dst_dir / path.name)
    stats: dict[str, object] = {
        **scheme_description(scheme),
        "num_quantized_tensors": len(errors),
        "mean_relative_weight_error": sum(errors.values()) / max(len(errors), 1),
        "max_relative_weight_error": max(errors.values(), default=0.0),
        "relative_weight_error": {name: round(value, 6) for name, value in errors.items()},
    }
    config = json.loads((src_dir / "config.json").read_text())
    config["dtype"] = "float32"
    config["quantgate_quantization"] = stats
    (dst_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return stats
