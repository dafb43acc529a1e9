"""Fast checks of the quantization arithmetic in quantgate.tiny.quantize (no model, no server)."""

import json

import pytest
import torch

from quantgate.tiny.quantize import (
    E2M1_GRID,
    Fp8Weight,
    Int2Weight,
    Nvfp4Weight,
    dequantize,
    e2m1_code_values,
    quantize,
    quantize_checkpoint,
    quantize_fp8,
    quantize_int2,
    quantize_nvfp4,
    relative_error,
    round_to_e2m1,
    round_to_e4m3,
)


def _random_weight(rows: int = 64, cols: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator) * 0.05


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


def test_fp8_per_channel_amax_maps_to_448():
    weight = _random_weight()
    weight[3] *= 100  # channels with very different ranges each get their own scale
    quantized = quantize_fp8(weight)
    assert quantized.codes.dtype == torch.float8_e4m3fn and quantized.scales.shape == (64, 1)
    assert torch.equal(quantized.codes.float().abs().amax(dim=1), torch.full((64,), 448.0))
    assert torch.allclose(quantized.scales.squeeze(1), weight.abs().amax(dim=1) / 448)
    assert torch.allclose(dequantize(quantized).abs().amax(dim=1), weight.abs().amax(dim=1))


def test_nvfp4_block_structure():
    weight = _random_weight()
    quantized = quantize_nvfp4(weight)
    assert quantized.codes.dtype == torch.uint8 and quantized.codes.shape == weight.shape
    assert int(quantized.codes.max()) <= 15
    assert quantized.block_scales.dtype == torch.float8_e4m3fn and quantized.block_scales.shape == (
        64,
        256 // 16,
    )
    assert quantized.global_scale.dtype == torch.float32 and quantized.global_scale.dim() == 0
    assert torch.isclose(quantized.global_scale, weight.abs().amax() / (448 * 6))
    values = dequantize(quantized).reshape(64, 16, 16)
    scales = quantized.block_scales.float() * quantized.global_scale
    grid = torch.tensor(E2M1_GRID)
    for row in range(64):
        for block in range(16):
            # Every 16-block is (one scale) x (at most 8 E2M1 magnitudes, with signs) ...
            magnitudes = values[row, block].abs().unique()
            assert len(magnitudes) <= 8
            candidates = grid * scales[row, block]  # the same FP32 product dequantize computes
            assert torch.isin(magnitudes, candidates).all()
            # ... and the block's largest value is close to 6 x its scale (the block amax maps to
            # E2M1's max).
            assert 5 * scales[row, block] < magnitudes.max() <= 6 * scales[row, block] * 1.0001
    assert quantized.block_scales.float().max() <= 448


def test_nvfp4_rejects_in_features_not_multiple_of_block():
    with pytest.raises(ValueError, match="block size"):
        quantize_nvfp4(torch.randn(4, 24))


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


def test_error_ordering_fp8_below_nvfp4_below_int2():
    weight = _random_weight(128, 512)
    errors = {
        scheme: relative_error(weight, dequantize(quantize(weight, scheme)))
        for scheme in ("fp8", "nvfp4", "int2")
    }
    assert errors["fp8"] < 0.04 < errors["nvfp4"] < 0.15 < errors["int2"]


@pytest.mark.parametrize(
    ("scheme", "kind"), [("fp8", Fp8Weight), ("nvfp4", Nvfp4Weight), ("int2", Int2Weight)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_shape_and_dtype(scheme, kind, dtype):
    weight = _random_weight(32, 64).to(dtype)
    quantized = quantize(weight, scheme)
    assert isinstance(quantized, kind)
    restored = dequantize(quantized)
    assert restored.shape == weight.shape and restored.dtype == torch.float32
    if (
        scheme != "nvfp4"
    ):  # (NVFP4 recomputes its global scale from the rounded amax, so it may shift a little)
        # Quantizing the dequantized values again reproduces them exactly: they are on the grid.
        assert torch.equal(dequantize(quantize(restored, scheme)), restored)


def test_zero_weight_quantizes_to_zero():
    for scheme in ("fp8", "nvfp4"):
        assert torch.equal(dequantize(quantize(torch.zeros(4, 32), scheme)), torch.zeros(4, 32))


def test_unknown_scheme_and_bad_shape():
    with pytest.raises(ValueError, match="unknown scheme"):
        quantize(torch.zeros(2, 16), "int3")
    with pytest.raises(ValueError, match="2-D"):
        quantize(torch.zeros(16), "fp8")


def test_quantize_checkpoint_replaces_only_decoder_linears(tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "src"
    src.mkdir()
    tensors = {
        "model.embed_tokens.weight": _random_weight(32, 16, seed=1).bfloat16(),
        "model.layers.0.self_attn.q_proj.weight": _random_weight(16, 16, seed=2).bfloat16(),
        "model.layers.0.mlp.down_proj.weight": _random_weight(16, 32, seed=3).bfloat16(),
        "model.layers.0.input_layernorm.weight": torch.ones(16, dtype=torch.bfloat16),
    }
    save_file(tensors, src / "model.safetensors")
    (src / "config.json").write_text(json.dumps({"model_type": "qwen3", "dtype": "bfloat16"}))
    (src / "tokenizer.json").write_text("{}")
    stats = quantize_checkpoint(src, tmp_path / "dst", "nvfp4")
    written = load_file(tmp_path / "dst" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in written.values())
    assert torch.equal(
        written["model.embed_tokens.weight"], tensors["model.embed_tokens.weight"].float()
    )
    assert torch.equal(written["model.layers.0.input_layernorm.weight"], torch.ones(16))
    q_proj = tensors["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(
        written["model.layers.0.self_attn.q_proj.weight"], dequantize(quantize(q_proj, "nvfp4"))
    )
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert config["dtype"] == "float32"
    assert config["quantgate_quantization"]["block_size"] == 16
    assert (
        config["quantgate_quantization"]["num_quantized_tensors"]
        == stats["num_quantized_tensors"]
        == 2
    )
    assert 0 < stats["mean_relative_weight_error"] < 0.2
    assert (tmp_path / "dst" / "tokenizer.json").read_text() == "{}"


def test_docstring_examples():
    import doctest

    import quantgate.tiny.quantize

    result = doctest.testmod(quantgate.tiny.quantize)
    assert result.attempted > 0 and result.failed == 0
