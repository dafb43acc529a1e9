"""The tiny model's quantized copies in the formats users gate, written by the libraries that
define those formats, and the reference arithmetic that checks them.

=========  ==============================================================================
precision  checkpoint (every decoder Linear: q/k/v/o, gate/up/down; embeddings, norms and the
           tied ``lm_head`` stay BF16)
=========  ==============================================================================
``fp8``    the layout of ``Qwen/Qwen3-32B-FP8``: ``weight`` in ``float8_e4m3fn``, a float32
           ``weight_scale_inv`` per 128 x 128 block, ``quantization_config``
           ``{quant_method: fp8, activation_scheme: dynamic, weight_block_size: [128, 128]}``.
           Written by transformers' own FineGrainedFP8 quantizer (``Fp8Quantize``, what
           ``save_pretrained`` writes after quantizing on load, which needs a GPU).
``nvfp4``  compressed-tensors ``nvfp4-pack-quantized`` as ``RedHatAI/Qwen3-32B-NVFP4``: E2M1
           values two per byte (``weight_packed``), an E4M3 ``weight_scale`` per 16 weights, a
           float32 ``weight_global_scale`` shared by the fused q/k/v and gate/up projections (as
           llm-compressor does, so vLLM does not warn). Weight-only (the ``NVFP4A16`` preset):
           see below.
``int4``   compressed-tensors ``pack-quantized`` W4A16, symmetric INT4 with one BF16 scale per
           output channel (the coarsest grouping): the middle ground between nvfp4 and int2.
``int2``   the planted broken precision: symmetric per-channel INT2 levels ``(2q + 1) * amax/3``,
           stored dequantized in float32 (no engine has a kernel for it; any loads it as dense).
=========  ==============================================================================

Why NVFP4 is W4A16 here, not W4A4 as RedHat's: on Hopper (the H200 the GPU run uses) vLLM runs
every NVFP4 checkpoint weight-only through its Marlin kernel, activations in 16 bit; a W4A16
checkpoint makes ``transformers serve`` on the CPU compute the same thing, where a W4A4 one would
have compressed-tensors fake-quantize the activations there and nowhere else. The weight tensors
and their layout are those of the W4A4 release; only ``input_global_scale`` (and the calibration
pass that would produce it) is absent.

Why llm-compressor is not used: its releases pin transformers and compressed-tensors versions
(0.14: ``transformers<=5.17``, ``compressed-tensors==0.19``) that do not sit beside ours, so the
scales are computed with compressed-tensors' own ``generate_gparam`` / ``calculate_qparams`` (the
functions llm-compressor's observers call) and the checkpoint is compressed and described by its
``ModelCompressor``.

vLLM shape rules met by the tiny model (every quantized matrix is 128 x 128, 384 x 128 or
128 x 384): FP8 block quantization needs each output partition of a fused layer and the input
size divisible by the 128 x 128 block; Marlin (NVFP4 on Hopper, and INT4) wants N % 64 == 0 and
K % 128 == 0 (it pads other shapes, warning "thread-tile padding"); Machete (INT4 on Hopper)
wants K % 64 == 0 and N % 128 == 0, group size -1, 64 or 128.

The reference arithmetic (``quantize_*``, ``dequantize``) is written from the formats'
definitions, independently of the libraries, and mirrors their operation order so tests can
compare bit for bit::

    >>> w = torch.randn(8, 32)
    >>> q = quantize_nvfp4(w)
    >>> q.codes.shape, q.block_scales.dtype, q.block_scales.shape
    (torch.Size([8, 32]), torch.float8_e4m3fn, torch.Size([8, 2]))
    >>> relative_error(w, dequantize(q)) < 0.2
    True

``quantize_checkpoint(src_dir, dst_dir, "nvfp4")`` writes a checkpoint; ``dequantized_weights``
reads one back through the library that defines its format.
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
FP8_BLOCK = (128, 128)
#: compressed-tensors' smallest scale for an all-zero block (its ``_get_dtype_eps`` for E4M3).
E4M3_EPS = 0.125
SCHEMES = ("fp8", "nvfp4", "int4", "int2")
#: What each precision's checkpoint is, in words (the manifest and config record it).
FORMATS = {
    "fp8": "fp8 block 128x128 (quant_method fp8, transformers FineGrainedFP8)",
    "nvfp4": "compressed-tensors nvfp4-pack-quantized, W4A16 (NVFP4A16)",
    "int4": "compressed-tensors pack-quantized, W4A16 int4 symmetric per channel",
    "int2": "dense float32, fake-quantized int2 (planted broken precision)",
}
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
#: Projections vLLM fuses into one matrix (QKVParallelLinear, MergedColumnParallelLinear): NVFP4
#: gives each group one global scale.
FUSED_PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


# --- reference arithmetic ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fp8Weight:
    """FP8 E4M3 codes (``float8_e4m3fn``, shape of the weight) and FP32 ``scale_inv`` per
    128 x 128 block (``[out/128, in/128]``): the value is ``code * scale_inv``."""

    codes: torch.Tensor
    scale_inv: torch.Tensor


@dataclass(frozen=True)
class Nvfp4Weight:
    """NVFP4 as compressed-tensors stores it: E2M1 codes as uint8 nibbles (bit 3 = sign, bits 0-2
    = index into ``E2M1_GRID``), shape of the weight; E4M3 block scales ``[out, in/16]``; an FP32
    ``global_scale`` that divides (``value = code * block_scale / global_scale``)."""

    codes: torch.Tensor
    block_scales: torch.Tensor
    global_scale: torch.Tensor


@dataclass(frozen=True)
class Int4Weight:
    """Symmetric INT4 codes in ``-8..7`` (int8, shape of the weight) and one scale per output
    channel (``[out, 1]``, the weight's dtype): ``value = code * scale``, in that dtype."""

    codes: torch.Tensor
    scales: torch.Tensor


@dataclass(frozen=True)
class Int2Weight:
    """INT2 codes in ``{-2, -1, 0, 1}`` (int8, shape of the weight) and FP32 per-row steps
    (``[out, 1]``)."""

    codes: torch.Tensor
    scales: torch.Tensor


QuantizedWeight = Fp8Weight | Nvfp4Weight | Int4Weight | Int2Weight


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


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """uint8 ``[out, in/2]`` -> uint8 codes ``[out, in]``: element ``2j`` is the low nibble of byte
    ``j``, element ``2j + 1`` the high one (the NVFP4 packing vLLM's kernels read)."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)


def unpack_int4_words(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """int32 ``[out, in/8]`` -> int8 codes ``[out, in]``: element ``8j + k`` is bits ``4k..4k+3`` of
    word ``j``, stored offset by 8 (GPTQ's ``uint4b8``, what vLLM's Marlin and Machete read)."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    nibbles = (packed.unsqueeze(-1) >> shifts) & 0xF
    return (nibbles.reshape(packed.shape[0], -1)[:, :in_features] - 8).to(torch.int8)


def _row_amax(weight: torch.Tensor) -> torch.Tensor:
    return weight.float().abs().amax(dim=1, keepdim=True)


def quantize_fp8(weight: torch.Tensor, block: tuple[int, int] = FP8_BLOCK) -> Fp8Weight:
    """FP8 E4M3 with one FP32 scale per ``block`` (rows x columns): the block's largest magnitude
    maps to 448 (``scale = 448 / amax``, stored inverted as ``scale_inv``)."""
    rows, cols = weight.shape
    block_m, block_n = block
    if rows % block_m or cols % block_n:
        raise ValueError(f"shape {tuple(weight.shape)} is not a multiple of the block {block}")
    tiles = weight.float().reshape(rows // block_m, block_m, cols // block_n, block_n)
    amax = tiles.abs().amax(dim=(1, 3))
    scales = torch.where(amax > 0, E4M3_MAX / torch.where(amax > 0, amax, 1.0), 1.0)
    codes = (tiles * scales[:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX)
    return Fp8Weight(
        codes=codes.to(torch.float8_e4m3fn).reshape(rows, cols), scale_inv=1.0 / scales
    )


def nvfp4_global_scale(weight: torch.Tensor) -> torch.Tensor:
    """compressed-tensors' NVFP4 global scale: ``448 * 6 / amax`` (FP32, a divisor)."""
    amax = weight.float().abs().amax().clamp(min=torch.finfo(torch.float32).tiny)
    scale = torch.nan_to_num(E4M3_MAX * E2M1_MAX / amax, nan=1.0, posinf=1.0, neginf=1.0)
    return scale.reshape(())  # (an all-zero weight: 1, as the library's generate_gparam)


def quantize_nvfp4(
    weight: torch.Tensor,
    block_size: int = NVFP4_BLOCK_SIZE,
    global_scale: torch.Tensor | None = None,
) -> Nvfp4Weight:
    """NVFP4: E2M1 codes in ``block_size`` blocks along the input dim, E4M3 block scales
    ``round_e4m3(global_scale * block_amax / 6)``, one FP32 divisor ``global_scale`` (default
    :func:`nvfp4_global_scale` of this weight; a fused layer passes its group's)."""
    out_features, in_features = weight.shape
    if in_features % block_size:
        raise ValueError(
            f"in_features={in_features} is not a multiple of the block size {block_size}"
        )
    if global_scale is None:
        global_scale = nvfp4_global_scale(weight)
    global_scale = global_scale.float().reshape(())
    blocks = weight.float().reshape(out_features, in_features // block_size, block_size)
    block_scales = round_to_e4m3(global_scale * (blocks.abs().amax(dim=2) / E2M1_MAX))
    block_scales = torch.where(
        block_scales.float() == 0, torch.tensor(E4M3_EPS), block_scales.float()
    ).to(torch.float8_e4m3fn)  # an all-zero (or underflowed) block
    divisor = block_scales.float().unsqueeze(2) / global_scale
    codes = round_to_e2m1(blocks / divisor).reshape(out_features, in_features)
    return Nvfp4Weight(codes=codes, block_scales=block_scales, global_scale=global_scale)


def quantize_int4(weight: torch.Tensor) -> Int4Weight:
    """Symmetric INT4 per output channel as compressed-tensors computes it: ``scale = amax / 7.5``
    stored in the weight's dtype, codes ``clamp(round(w / scale), -8, 7)`` in that dtype."""
    scales = _row_amax(weight) / 7.5
    scales = torch.where(scales == 0, torch.finfo(torch.float32).eps, scales).to(weight.dtype)
    codes = torch.round((weight / scales).clamp(-8, 7))
    return Int4Weight(codes=codes.to(torch.int8), scales=scales)


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
    """Quantize a 2-D weight with ``scheme`` in ``SCHEMES`` (reference arithmetic)."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    quantizers = {
        "fp8": quantize_fp8,
        "nvfp4": quantize_nvfp4,
        "int4": quantize_int4,
        "int2": quantize_int2,
    }
    if scheme not in quantizers:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    return quantizers[scheme](weight)


def dequantize(quantized: QuantizedWeight) -> torch.Tensor:
    """The FP32 values a quantized weight represents (what a kernel computes with after scaling)."""
    if isinstance(quantized, Fp8Weight):
        rows, cols = quantized.codes.shape
        grid_m, grid_n = quantized.scale_inv.shape
        tiles = quantized.codes.float().reshape(grid_m, rows // grid_m, grid_n, cols // grid_n)
        return (tiles * quantized.scale_inv[:, None, :, None].float()).reshape(rows, cols)
    if isinstance(quantized, Nvfp4Weight):
        out_features, in_features = quantized.codes.shape
        num_blocks = quantized.block_scales.shape[1]
        values = e2m1_code_values(quantized.codes).reshape(
            out_features, num_blocks, in_features // num_blocks
        )
        scale = quantized.block_scales.float().unsqueeze(2) / quantized.global_scale
        return (values * scale).reshape(out_features, in_features)
    if isinstance(quantized, Int4Weight):  # in the scales' dtype, as compressed-tensors does
        return (quantized.codes.to(quantized.scales.dtype) * quantized.scales).float()
    if isinstance(quantized, Int2Weight):
        return (2 * quantized.codes.float() + 1) * quantized.scales
    raise TypeError(f"not a quantized weight: {type(quantized).__name__}")


def relative_error(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """``||reference - approximation||_F / ||reference||_F`` in FP32."""
    reference = reference.float()
    return float((reference - approximation.float()).norm() / reference.norm().clamp(min=1e-30))


def is_quantized_linear(name: str) -> bool:
    """Whether the checkpoint tensor ``name`` is a decoder-layer Linear weight that a scheme
    replaces."""
    return ".layers." in name and name.endswith(QUANTIZED_LINEAR_SUFFIXES)


# --- checkpoints --------------------------------------------------------------------------------


def _copy_side_files(src_dir: Path, dst_dir: Path) -> None:
    """Tokenizer, chat template, generation config: everything but weights and config.json."""
    for path in sorted(src_dir.iterdir()):
        if path.is_file() and path.suffix != ".safetensors" and path.name != "config.json":
            shutil.copyfile(path, dst_dir / path.name)


def _write_fp8(src_dir: Path, dst_dir: Path) -> dict:
    """transformers' FineGrainedFP8 quantizer on every decoder Linear, Qwen3-32B-FP8's config."""
    from safetensors.torch import load_file, save_file
    from transformers import FineGrainedFP8Config
    from transformers.integrations.finegrained_fp8 import Fp8Quantize
    from transformers.quantizers.quantizer_finegrained_fp8 import FineGrainedFP8HfQuantizer

    config = {
        "activation_scheme": "dynamic",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    }
    quantizer = FineGrainedFP8HfQuantizer(
        FineGrainedFP8Config(activation_scheme="dynamic", weight_block_size=FP8_BLOCK),
        pre_quantized=False,
    )
    op = Fp8Quantize(quantizer)
    tensors, written = load_file(src_dir / "model.safetensors"), {}
    for name in sorted(tensors):
        if is_quantized_linear(name):
            rows, cols = tensors[name].shape
            if rows % FP8_BLOCK[0] or cols % FP8_BLOCK[1]:  # Fp8Quantize would pass it through
                raise ValueError(f"{name}: {rows} x {cols} is not a multiple of {FP8_BLOCK}")
            written.update(op.convert({name: tensors[name]}))
        else:
            written[name] = tensors[name]
    save_file(written, dst_dir / "model.safetensors", metadata={"format": "pt"})
    return config


def _compressed_tensors_scheme(precision: str):
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationScheme,
        preset_name_to_scheme,
    )

    if precision == "nvfp4":
        return preset_name_to_scheme("NVFP4A16", ["Linear"]), "nvfp4-pack-quantized"
    weights = QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="channel", dynamic=False
    )
    return QuantizationScheme(targets=["Linear"], weights=weights), "pack-quantized"


def _write_compressed_tensors(src_dir: Path, dst_dir: Path, precision: str) -> dict:
    """compressed-tensors: apply the scheme, set each weight's scales with the library's
    ``generate_gparam`` / ``calculate_qparams`` (fused projections share NVFP4's global scale),
    compress with ``ModelCompressor`` and let it write the ``quantization_config``."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig,
        QuantizationStatus,
        QuantizationStrategy,
        apply_quantization_config,
    )
    from compressed_tensors.quantization.utils import (
        calculate_qparams,
        generate_gparam,
        is_module_quantized,
    )
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    scheme, quantization_format = _compressed_tensors_scheme(precision)
    model = AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.bfloat16)
    apply_quantization_config(
        model, QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    )
    modules = {name: m for name, m in model.named_modules() if is_module_quantized(m)}
    global_scales = {}
    if scheme.weights.strategy == QuantizationStrategy.TENSOR_GROUP:
        for name, module in modules.items():
            weight = module.weight.float()
            global_scales[name] = generate_gparam(weight.amin(), weight.amax())
        for name in list(global_scales):
            for group in FUSED_PROJECTIONS:
                if name.endswith("." + group[0]):
                    members = [name[: -len(group[0])] + member for member in group]
                    shared = torch.stack([global_scales[m] for m in members]).min(dim=0).values
                    global_scales.update({m: shared for m in members})
    for name, module in modules.items():
        args, weight = module.quantization_scheme.weights, module.weight.float()
        if args.group_size:
            blocks = weight.unflatten(-1, (-1, args.group_size))
            lows, highs = blocks.amin(dim=-1), blocks.amax(dim=-1)
        else:
            lows, highs = weight.amin(dim=-1, keepdim=True), weight.amax(dim=-1, keepdim=True)
        scale, zero_point = calculate_qparams(
            lows, highs, args, global_scale=global_scales.get(name)
        )
        module.weight_scale.data.copy_(scale)
        if hasattr(module, "weight_zero_point"):
            module.weight_zero_point.data.copy_(zero_point)
        if name in global_scales:
            module.weight_global_scale.data.copy_(global_scales[name])
        module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(
        model, quantization_format=quantization_format
    )
    compressor.compress_model(model)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, dst_dir / "model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(src_dir / "config.json", dst_dir / "config.json")
    compressor.update_config(str(dst_dir))
    return json.loads((dst_dir / "config.json").read_text())["quantization_config"]


def _write_int2(src_dir: Path, dst_dir: Path) -> None:
    """The reference INT2 arithmetic, dequantized and stored in float32 (exact there)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(src_dir / "model.safetensors")
    written = {
        name: (dequantize(quantize_int2(t)) if is_quantized_linear(name) else t.float())
        for name, t in sorted(tensors.items())
    }
    save_file(
        {k: v.contiguous() for k, v in written.items()},
        dst_dir / "model.safetensors",
        metadata={"format": "pt"},
    )


def dequantized_weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """The decoder Linear weights of a checkpoint as the library of its format decompresses them:
    transformers' ``Fp8Dequantize`` arithmetic for ``quant_method: fp8`` (code times the block's
    ``weight_scale_inv``, FP32), compressed-tensors' compressor for compressed-tensors formats (in
    the dtype it returns: BF16), the stored values otherwise. A loader casts them to the model's
    dtype."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    tensors = load_file(checkpoint_dir / "model.safetensors")
    config = json.loads((checkpoint_dir / "config.json").read_text()).get("quantization_config")
    method = (config or {}).get("quant_method")
    names = sorted({n.rsplit(".", 1)[0] for n in tensors if ".layers." in n and "proj." in n})
    if method == "compressed-tensors":
        from compressed_tensors.compressors import BaseCompressor
        from compressed_tensors.quantization import QuantizationConfig

        ct_config = QuantizationConfig.model_validate(config)
        (scheme,) = ct_config.config_groups.values()
        compressor = BaseCompressor.get_value_from_registry(scheme.format or ct_config.format)
        out = {}
        for module in names:
            state = {
                k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(module + ".")
            }
            out[module + ".weight"] = compressor.decompress(state, scheme)["weight"]
        return out
    if method == "fp8":
        return {
            f"{m}.weight": dequantize(
                Fp8Weight(tensors[f"{m}.weight"], tensors[f"{m}.weight_scale_inv"])
            )
            for m in names
        }
    return {f"{m}.weight": tensors[f"{m}.weight"].float() for m in names}


def quantize_checkpoint(src_dir: Path, dst_dir: Path, scheme: str) -> dict[str, object]:
    """Write ``dst_dir``: the HF checkpoint ``src_dir`` (one ``model.safetensors``) in
    ``scheme``'s format (module docstring). Its config gains a ``quantgate_quantization`` entry
    (format, library, weight errors against ``src_dir``), which is also returned::

        stats = quantize_checkpoint(Path("tiny/bf16"), Path("tiny/nvfp4"), "nvfp4")
        stats["mean_relative_weight_error"]  # e.g. 0.09
    """
    from safetensors.torch import load_file

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    if not (src_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in {src_dir}")
    dst_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((src_dir / "config.json").read_text())
    if scheme == "fp8":
        config["quantization_config"] = _write_fp8(src_dir, dst_dir)
        library = _version("transformers")
    elif scheme in ("nvfp4", "int4"):
        config["quantization_config"] = _write_compressed_tensors(src_dir, dst_dir, scheme)
        library = _version("compressed-tensors")
    else:
        _write_int2(src_dir, dst_dir)
        config["dtype"] = "float32"
        library = "quantgate.tiny.quantize"
    _copy_side_files(src_dir, dst_dir)
    (dst_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    original = load_file(src_dir / "model.safetensors")
    errors = {
        name: relative_error(original[name], weight)
        for name, weight in dequantized_weights(dst_dir).items()
    }
    stats: dict[str, object] = {
        "scheme": scheme,
        "format": FORMATS[scheme],
        "written_by": library,
        "quantized_modules": "decoder-layer Linear weights (q/k/v/o, gate/up/down)",
        "kept_modules": "embeddings, norms, lm_head (tied to the embeddings)",
        "num_quantized_tensors": len(errors),
        "mean_relative_weight_error": sum(errors.values()) / max(len(errors), 1),
        "max_relative_weight_error": max(errors.values(), default=0.0),
        "relative_weight_error": {name: round(value, 6) for name, value in errors.items()},
    }
    config["quantgate_quantization"] = stats
    (dst_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return stats


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return f"{distribution} {version(distribution)}"
