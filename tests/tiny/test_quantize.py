"""The quantization of the tiny model: the reference arithmetic (fast, no model), and the
real-format checkpoints the libraries write, checked against it bit for bit, as the CPU server
loads them."""

import json

import pytest
import torch

from quantgate.tiny.quantize import (
    E2M1_GRID,
    FP8_BLOCK,
    Fp8Weight,
    Int2Weight,
    Int4Weight,
    Nvfp4Weight,
    dequantize,
    dequantized_weights,
    e2m1_code_values,
    is_quantized_linear,
    nvfp4_global_scale,
    quantize,
    quantize_checkpoint,
    quantize_fp8,
    quantize_int2,
    quantize_int4,
    quantize_nvfp4,
    relative_error,
    round_to_e2m1,
    round_to_e4m3,
    unpack_int4_words,
    unpack_nibbles,
)


def _random_weight(rows: int = 128, cols: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator) * 0.05


def _heavy_tailed_weight(rows: int = 384, cols: int = 128, seed: int = 0) -> torch.Tensor:
    """Student-t (4 degrees of freedom), as the tiny model's decoder weights start."""
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(rows, cols, generator=generator)
    chi2 = (torch.randn(4, rows, cols, generator=generator) ** 2).sum(0)
    t = normal / torch.sqrt(chi2 / 4)
    return t / t.std() * 0.1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (448.0, 448.0),
        (1000.0, 448.0),
        (-1000.0, -448.0),  # largest finite value; saturates
        (1.0, 1.0),
        (1.0625, 1.0),
        (1.1875, 1.25),  # 3 mantissa bits: step 0.125 in [1, 2); tie -> even
        (17.0, 16.0),
        (19.0, 20.0),
        (240.0, 240.0),
        (232.0, 224.0),  # tie 232 -> 224 (even mantissa)
        (2.0**-9, 2.0**-9),
        (2.0**-11, 0.0),  # smallest subnormal; below half of it -> 0
    ],
)
def test_e4m3_rounding(value, expected):
    assert round_to_e4m3(torch.tensor([value])).float().item() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, 0.0),
        (0.2, 0.0),
        (0.25, 0.0),
        (0.3, 0.5),
        (0.75, 1.0),
        (1.25, 1.0),
        (1.3, 1.5),
        (1.75, 2.0),
        (2.5, 2.0),
        (2.6, 3.0),
        (3.5, 4.0),
        (5.0, 4.0),
        (5.1, 6.0),
        (6.0, 6.0),
        (100.0, 6.0),
        (-0.75, -1.0),
        (-2.5, -2.0),
        (-7.0, -6.0),
        (-0.1, 0.0),
    ],
)
def test_e2m1_rounding_ties_to_even_and_saturates(value, expected):
    code = round_to_e2m1(torch.tensor([value]))
    assert e2m1_code_values(code).item() == expected


def test_e2m1_codes_are_sign_and_grid_index():
    codes = torch.arange(16, dtype=torch.uint8)
    values = e2m1_code_values(codes)
    assert values[:8].tolist() == list(E2M1_GRID)
    assert values[8:].tolist() == [-v for v in E2M1_GRID]
    nonzero = values != 0
    assert (
        round_to_e2m1(values[nonzero]).tolist() == codes[nonzero].tolist()
    )  # every non-zero code round-trips
    assert round_to_e2m1(torch.tensor([-0.0, 0.0])).tolist() == [0, 0]  # no negative zero


def test_fp8_block_amax_maps_to_448():
    weight = _random_weight(256, 384)
    weight[130, 7] = 9.0  # one outlier only coarsens the scale of its own 128 x 128 block
    quantized = quantize_fp8(weight)
    assert quantized.codes.dtype == torch.float8_e4m3fn and quantized.codes.shape == (256, 384)
    assert quantized.scale_inv.dtype == torch.float32 and quantized.scale_inv.shape == (2, 3)
    tiles = weight.reshape(2, 128, 3, 128).abs().amax(dim=(1, 3))
    assert torch.allclose(quantized.scale_inv, tiles / 448)
    code_tiles = quantized.codes.float().reshape(2, 128, 3, 128).abs().amax(dim=(1, 3))
    assert torch.equal(code_tiles, torch.full((2, 3), 448.0))
    assert quantized.scale_inv[1, 0] > 10 * quantized.scale_inv[0, 0]
    assert relative_error(weight[:128], dequantize(quantized)[:128]) < 0.04


def test_fp8_rejects_shapes_off_the_block():
    with pytest.raises(ValueError, match="multiple of the block"):
        quantize_fp8(torch.randn(64, 128))


def test_nvfp4_block_structure():
    weight = _random_weight()
    quantized = quantize_nvfp4(weight)
    assert quantized.codes.dtype == torch.uint8 and quantized.codes.shape == weight.shape
    assert int(quantized.codes.max()) <= 15
    assert quantized.block_scales.dtype == torch.float8_e4m3fn
    assert quantized.block_scales.shape == (128, 256 // 16)
    assert quantized.global_scale.dtype == torch.float32 and quantized.global_scale.dim() == 0
    # compressed-tensors' convention: a divisor mapping the tensor's amax to 448 * 6
    assert torch.isclose(quantized.global_scale, 448 * 6 / weight.abs().amax())
    values = dequantize(quantized).reshape(128, 16, 16)
    scales = quantized.block_scales.float() / quantized.global_scale
    grid = torch.tensor(E2M1_GRID)
    for row in range(0, 128, 9):
        for block in range(16):
            # Every 16-block is (one scale) x (at most 8 E2M1 magnitudes, with signs) ...
            magnitudes = values[row, block].abs().unique()
            assert len(magnitudes) <= 8
            assert torch.isin(magnitudes, grid * scales[row, block]).all()
            # ... and the block's largest value is close to 6 x its scale
            assert 5 * scales[row, block] < magnitudes.max() <= 6 * scales[row, block] * 1.0001
    assert quantized.block_scales.float().max() <= 448


def test_nvfp4_a_shared_global_scale_only_coarsens_the_block_scales():
    weight = _random_weight()
    own = quantize_nvfp4(weight)
    shared = quantize_nvfp4(weight, global_scale=own.global_scale / 2)  # a fused partner's amax
    assert shared.global_scale == own.global_scale / 2
    assert shared.block_scales.float().max() < own.block_scales.float().max()
    assert relative_error(weight, dequantize(shared)) < 0.15


def test_nvfp4_rejects_in_features_not_multiple_of_block():
    with pytest.raises(ValueError, match="block size"):
        quantize_nvfp4(torch.randn(4, 24))


def test_int4_per_channel_scale_and_range():
    weight = _random_weight().bfloat16()
    quantized = quantize_int4(weight)
    assert quantized.scales.dtype == torch.bfloat16 and quantized.scales.shape == (128, 1)
    assert int(quantized.codes.min()) >= -8 and int(quantized.codes.max()) <= 7
    assert torch.equal(
        quantized.scales, (weight.float().abs().amax(1, keepdim=True) / 7.5).bfloat16()
    )
    assert len(quantized.codes.unique()) > 8  # 15-16 levels are in use


def test_int2_has_four_symmetric_levels_per_channel():
    weight = _random_weight()
    quantized = quantize_int2(weight)
    assert set(quantized.codes.unique().tolist()) <= {-2, -1, 0, 1}
    values = dequantize(quantized)
    for row in range(4):
        amax = weight[row].abs().max()
        levels = torch.tensor([-amax, -amax / 3, amax / 3, amax])
        assert torch.allclose(
            values[row].unique().sort().values, levels[torch.isin(levels, values[row])]
        )
        assert len(values[row].unique()) <= 4


def test_error_ordering_on_heavy_tailed_weights():
    """The recipe's reason for heavy tails: one scale per channel (int4) loses clearly more than
    16-element blocks (nvfp4), and int2 loses most."""
    weight = _heavy_tailed_weight().bfloat16()
    errors = {s: relative_error(weight, dequantize(quantize(weight, s))) for s in ("fp8", "nvfp4")}
    errors["int4"] = relative_error(weight, dequantize(quantize_int4(weight)))
    errors["int2"] = relative_error(weight, dequantize(quantize_int2(weight)))
    assert errors["fp8"] < errors["nvfp4"] < errors["int4"] < errors["int2"]
    assert errors["int4"] > 1.5 * errors["nvfp4"]


@pytest.mark.parametrize(
    ("scheme", "kind"),
    [("fp8", Fp8Weight), ("nvfp4", Nvfp4Weight), ("int4", Int4Weight), ("int2", Int2Weight)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_shape_and_dtype(scheme, kind, dtype):
    weight = _random_weight(128, 128).to(dtype)
    quantized = quantize(weight, scheme)
    assert isinstance(quantized, kind)
    restored = dequantize(quantized)
    assert restored.shape == weight.shape and restored.dtype == torch.float32
    if scheme in ("fp8", "int2"):  # (NVFP4 and INT4 rescale from the rounded amax)
        # Quantizing the dequantized values again reproduces them exactly: they are on the grid.
        assert torch.equal(dequantize(quantize(restored, scheme)), restored)


def test_zero_weight_quantizes_to_zero():
    for scheme in ("fp8", "nvfp4", "int4"):
        zeros = torch.zeros(128, 128)
        assert torch.equal(dequantize(quantize(zeros, scheme)), zeros)


def test_unknown_scheme_and_bad_shape():
    with pytest.raises(ValueError, match="unknown scheme"):
        quantize(torch.zeros(2, 16), "int3")
    with pytest.raises(ValueError, match="2-D"):
        quantize(torch.zeros(16), "fp8")


def test_packing_layouts_are_the_ones_vllm_reads():
    # NVFP4: two codes a byte, the first in the low nibble
    assert unpack_nibbles(torch.tensor([[0x21, 0xF8]], dtype=torch.uint8)).tolist() == [
        [1, 2, 8, 15]
    ]
    # INT4 (uint4b8): eight codes an int32, the first in the lowest bits, offset by 8
    word = sum((code + 8) << (4 * k) for k, code in enumerate([-8, -1, 0, 1, 7, 3, -3, 2]))
    packed = torch.tensor([[word - (1 << 32) if word >= 1 << 31 else word]], dtype=torch.int32)
    assert unpack_int4_words(packed, 8).tolist() == [[-8, -1, 0, 1, 7, 3, -3, 2]]


def test_docstring_examples():
    import doctest

    import quantgate.tiny.quantize

    result = doctest.testmod(quantgate.tiny.quantize)
    assert result.attempted > 0 and result.failed == 0


# --- the checkpoints: written by the libraries, read back bit for bit ---------------------------


def _write_random_checkpoint(directory, kv_heads: int = 2):
    """A random tiny Qwen3 with the recipe's shape (or another KV-head count), BF16."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from quantgate.tiny.model import MODEL_SHAPE, heavy_tailed_init_

    torch.manual_seed(0)
    shape = {**MODEL_SHAPE, "num_key_value_heads": kv_heads}
    config = Qwen3Config(vocab_size=256, tie_word_embeddings=True, pad_token_id=0, **shape)
    model = Qwen3ForCausalLM(config)
    heavy_tailed_init_(model, seed=0)
    model.to(torch.bfloat16).save_pretrained(directory)
    (directory / "tokenizer.json").write_text("{}")  # side files are copied as they are
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    src = _write_random_checkpoint(root / "bf16")
    stats = {s: quantize_checkpoint(src, root / s, s) for s in ("fp8", "nvfp4", "int4", "int2")}
    return root, stats


def _tensors(directory):
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def _config(directory):
    return json.loads((directory / "config.json").read_text())


@pytest.mark.slow
def test_fp8_checkpoint_is_qwen3_fp8_layout(checkpoints):
    root, _ = checkpoints
    src, fp8 = _tensors(root / "bf16"), _tensors(root / "fp8")
    config = _config(root / "fp8")
    assert config["quantization_config"] == {
        "activation_scheme": "dynamic",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    }
    assert config["dtype"] == "bfloat16"
    for name, tensor in src.items():
        if not is_quantized_linear(name):  # embeddings and norms as they were
            assert fp8[name].dtype == torch.bfloat16 and torch.equal(fp8[name], tensor)
            continue
        module = name.rsplit(".", 1)[0]
        reference = quantize_fp8(tensor)
        assert fp8[name].dtype == torch.float8_e4m3fn
        assert fp8[module + ".weight_scale_inv"].dtype == torch.float32
        assert fp8[module + ".weight_scale_inv"].shape == (
            tensor.shape[0] // FP8_BLOCK[0],
            tensor.shape[1] // FP8_BLOCK[1],
        )
        assert torch.equal(fp8[name].view(torch.uint8), reference.codes.view(torch.uint8))
        assert torch.equal(fp8[module + ".weight_scale_inv"], reference.scale_inv)
    assert sum(name.endswith("weight_scale_inv") for name in fp8) == 14


@pytest.mark.slow
def test_nvfp4_checkpoint_is_compressed_tensors_nvfp4(checkpoints):
    root, _ = checkpoints
    src, nvfp4 = _tensors(root / "bf16"), _tensors(root / "nvfp4")
    qc = _config(root / "nvfp4")["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "nvfp4-pack-quantized"
    assert qc["ignore"] == ["lm_head"] and qc["quantization_status"] == "compressed"
    (group,) = qc["config_groups"].values()
    assert group["input_activations"] is None  # W4A16 (module docstring)
    weights = group["weights"]
    assert (weights["num_bits"], weights["type"], weights["group_size"]) == (4, "float", 16)
    assert weights["strategy"] == "tensor_group" and weights["symmetric"] is True
    for name, tensor in src.items():
        if not is_quantized_linear(name):
            assert torch.equal(nvfp4[name], tensor)
            continue
        module = name.rsplit(".", 1)[0]
        assert name not in nvfp4
        packed, scales = nvfp4[module + ".weight_packed"], nvfp4[module + ".weight_scale"]
        global_scale = nvfp4[module + ".weight_global_scale"]
        assert packed.dtype == torch.uint8 and packed.shape == (
            tensor.shape[0],
            tensor.shape[1] // 2,
        )
        assert scales.dtype == torch.float8_e4m3fn and scales.shape == (
            tensor.shape[0],
            tensor.shape[1] // 16,
        )
        assert global_scale.dtype == torch.float32 and global_scale.shape == (1,)
        reference = quantize_nvfp4(tensor, global_scale=global_scale)
        assert torch.equal(
            e2m1_code_values(unpack_nibbles(packed)), e2m1_code_values(reference.codes)
        )
        assert torch.equal(scales.view(torch.uint8), reference.block_scales.view(torch.uint8))


@pytest.mark.slow
def test_nvfp4_fused_projections_share_one_global_scale(checkpoints):
    """vLLM fuses q/k/v and gate/up into one matrix with one global scale (and warns about
    accuracy when the checkpoint's differ): each group carries the smallest of its members'."""
    root, _ = checkpoints
    src, nvfp4 = _tensors(root / "bf16"), _tensors(root / "nvfp4")
    for layer in (0, 1):
        for group in (
            ("self_attn", ("q_proj", "k_proj", "v_proj")),
            ("mlp", ("gate_proj", "up_proj")),
        ):
            prefix = f"model.layers.{layer}.{group[0]}"
            scales = [nvfp4[f"{prefix}.{p}.weight_global_scale"] for p in group[1]]
            own = [nvfp4_global_scale(src[f"{prefix}.{p}.weight"]) for p in group[1]]
            assert all(torch.equal(s, scales[0]) for s in scales)
            assert scales[0].item() == min(o.item() for o in own)
        down = f"model.layers.{layer}.mlp.down_proj"
        assert (
            nvfp4[down + ".weight_global_scale"].item()
            == nvfp4_global_scale(src[down + ".weight"]).item()
        )


@pytest.mark.slow
def test_int4_checkpoint_is_compressed_tensors_w4a16_per_channel(checkpoints):
    root, _ = checkpoints
    src, int4 = _tensors(root / "bf16"), _tensors(root / "int4")
    qc = _config(root / "int4")["quantization_config"]
    assert qc["format"] == "pack-quantized" and qc["ignore"] == ["lm_head"]
    (group,) = qc["config_groups"].values()
    assert group["input_activations"] is None
    weights = group["weights"]
    assert (weights["num_bits"], weights["type"], weights["strategy"]) == (4, "int", "channel")
    assert weights["symmetric"] is True and weights["group_size"] is None
    for name, tensor in src.items():
        if not is_quantized_linear(name):
            continue
        module = name.rsplit(".", 1)[0]
        packed, scales = int4[module + ".weight_packed"], int4[module + ".weight_scale"]
        assert packed.dtype == torch.int32 and packed.shape == (
            tensor.shape[0],
            tensor.shape[1] // 8,
        )
        assert scales.dtype == torch.bfloat16 and scales.shape == (tensor.shape[0], 1)
        assert int4[module + ".weight_shape"].tolist() == list(tensor.shape)
        assert f"{module}.weight_zero_point" not in int4  # symmetric: vLLM loads no zero point
        reference = quantize_int4(tensor)
        assert torch.equal(unpack_int4_words(packed, tensor.shape[1]), reference.codes)
        assert torch.equal(scales, reference.scales)


@pytest.mark.slow
def test_int2_checkpoint_is_dense_reference_arithmetic(checkpoints):
    root, _ = checkpoints
    src, int2 = _tensors(root / "bf16"), _tensors(root / "int2")
    config = _config(root / "int2")
    assert "quantization_config" not in config and config["dtype"] == "float32"
    for name, tensor in src.items():
        expected = (
            dequantize(quantize_int2(tensor)) if is_quantized_linear(name) else tensor.float()
        )
        assert int2[name].dtype == torch.float32 and torch.equal(int2[name], expected)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp8", "nvfp4", "int4", "int2"])
def test_library_decompression_is_the_reference_arithmetic(checkpoints, precision):
    root, stats = checkpoints
    src = _tensors(root / "bf16")
    weights = dequantized_weights(root / precision)
    assert len(weights) == stats[precision]["num_quantized_tensors"] == 14
    stored = _tensors(root / precision)
    for name, weight in weights.items():
        module = name.rsplit(".", 1)[0]
        if precision == "nvfp4":
            scale = stored[module + ".weight_global_scale"]
            expected = dequantize(quantize_nvfp4(src[name], global_scale=scale))
        else:
            expected = dequantize(quantize(src[name], precision))
        assert torch.equal(weight, expected.to(weight.dtype)), name  # (BF16 from the library)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp8", "nvfp4", "int4", "int2"])
def test_the_cpu_server_computes_with_the_real_checkpoint(checkpoints, precision):
    """What ``transformers serve`` loads (``from_pretrained(dtype="auto", device_map="cpu")``):
    FineGrainedFP8 dequantizes on load, compressed-tensors on the first forward; the weights it
    computes with are the library's decompression of the stored codes, bit for bit — no twin,
    no silent substitute."""
    from transformers import AutoModelForCausalLM

    root, _ = checkpoints
    model = AutoModelForCausalLM.from_pretrained(root / precision, dtype="auto", device_map="cpu")
    with torch.inference_mode():
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()
    state = model.state_dict()
    expected_dtype = torch.float32 if precision == "int2" else torch.bfloat16
    for name, weight in dequantized_weights(root / precision).items():
        assert state[name].dtype == expected_dtype
        assert torch.equal(state[name], weight.to(expected_dtype)), name


@pytest.mark.slow
def test_checkpoint_errors_order_the_precisions(checkpoints):
    _, stats = checkpoints
    errors = {p: s["mean_relative_weight_error"] for p, s in stats.items()}
    assert errors["fp8"] < errors["nvfp4"] < errors["int4"] < errors["int2"]
    assert all(s["num_quantized_tensors"] == 14 for s in stats.values())


@pytest.mark.slow
def test_fp8_refuses_a_matrix_off_the_128_block(tmp_path):
    """With one KV head of 64 the k/v projections are 64 x 128: transformers' Fp8Quantize would
    leave them BF16 under a config that says fp8, and vLLM's block-FP8 loader rejects them."""
    src = _write_random_checkpoint(tmp_path / "bf16", kv_heads=1)
    with pytest.raises(ValueError, match="not a multiple of"):
        quantize_checkpoint(src, tmp_path / "fp8", "fp8")
