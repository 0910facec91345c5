"""AnySat: output layouts for patch sizes and modality subsets, geometry errors, padding, parameter counts."""

import pytest
import torch

from engine.errors import EngineError
from engine.models.anysat import AnySat, anysat_config
from engine.models.attention import explicit_attention
from engine.models.registry import build_model, count_parameters, preset_names
from tests.engine.anysat_helpers import batch, small_model

torch.set_num_threads(2)
D = 32


@pytest.mark.parametrize(
    "names, extent, patch",
    [
        (("aerial",), 20, 10),
        (("s2",), 20, 10),
        (("aerial", "s2", "s1_asc"), 20, 10),
        (("aerial", "s2", "s1_asc"), 20, 20),
        (("s2", "s1_asc", "modis"), 60, 30),
        (("aerial", "modis"), 60, 20),
    ],
)
def test_every_output_layout(names, extent, patch):
    model = small_model()
    inputs, dates = batch(extent, names)
    grid = extent // patch
    finest = "aerial" if "aerial" in names else "s2"
    n = patch // 2 if finest == "aerial" else patch // 10  # sub-patches per patch side
    with torch.no_grad():
        tile = model(inputs, dates, patch_size_m=patch, output="tile")
        patch_out = model(inputs, dates, patch_size_m=patch, output="patch")
        everything = model(inputs, dates, patch_size_m=patch, output="all")
        dense = model(inputs, dates, patch_size_m=patch, output="dense")
    assert tile.shape == (2, D)
    assert patch_out.shape == (2, grid, grid, D)
    assert everything.shape == (2, 1 + grid * grid, D)
    assert torch.equal(everything[:, 0], tile)
    assert torch.equal(everything[:, 1:].reshape(2, grid, grid, D), patch_out)
    assert dense.shape == (2, grid * n, grid * n, 2 * D)
    # first half: the patch token repeated over its sub-patches
    # (within rounding: without dense output the last spatial block computes the class token alone)
    assert torch.allclose(dense[:, ::n, ::n, :D], patch_out, atol=1e-5)
    assert torch.equal(dense[:, ::n, ::n, :D], dense[:, n - 1 :: n, n - 1 :: n, :D])


def test_dense_of_a_chosen_modality_and_features():
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2"))
    with torch.no_grad():
        feats = model.forward_features(inputs, dates, patch_size_m=10, dense_modality="s2")
        same = model.forward_features(inputs, dates, patch_size_m=10, with_dense=False)
    assert feats.dense.shape == (2, 2, 2, 2 * D)  # one S2 pixel per 10 m patch
    assert same.dense is None and torch.allclose(feats.patch, same.patch, atol=1e-5)
    with pytest.raises(EngineError, match="non-context modality"):
        model.forward_features(inputs, dates, patch_size_m=10, dense_modality="modis")


def test_dense_places_sub_patches_on_the_ground():
    """At 20 m patches the aerial sub-patch tokens come grouped by 10 m cell; dense un-groups them."""
    model = small_model()
    inputs, dates = batch(20, ("aerial",), b=1)
    with torch.no_grad():
        layout = model.layout(inputs, 20)
        enc = model.encode(inputs, dates, None, layout, keep_subs=["aerial"])
        dense = model(inputs, dates, patch_size_m=20, output="dense")
    subs = enc.sub_tokens["aerial"][0, 0]  # (100, D), cell-major: 2 x 2 cells of 5 x 5
    # token 25 is the first sub-patch of the second cell (top-right 10 m cell): column 5 on the ground
    assert torch.equal(dense[0, 0, 5, D:], subs[25])
    assert torch.equal(dense[0, 5, 0, D:], subs[50])
    assert torch.equal(dense[0, 0, 1, D:], subs[1])


def test_result_does_not_depend_on_dict_order_or_chunking():
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2", "s1_asc"))
    with torch.no_grad():
        ref = model(inputs, dates, patch_size_m=10, output="all")
        reordered = {k: inputs[k] for k in reversed(list(inputs))}
        assert torch.allclose(model(reordered, dates, patch_size_m=10, output="all"), ref, atol=1e-6)
        model.spatial_encoder.token_chunk = 7
        model.cross_block.query_chunk = 2
        for name in ("s2", "s1_asc"):
            model.projectors[name].row_chunk = 3 * 5  # 3 pixels of 5 dates
        assert torch.allclose(model(inputs, dates, patch_size_m=10, output="all"), ref, atol=1e-5)


def test_class_token_only_last_block_equals_the_full_path():
    """Without sub-patch tokens kept, the spatial encoder's last block computes the class token
    alone (its query against all keys, its MLP): the same outputs as the full block within 1e-5."""
    model = small_model(depth=2)
    inputs, dates = batch(20, ("aerial", "s2", "s1_asc", "modis"))
    with torch.no_grad():
        layout = model.layout(inputs, 20)
        full = model.encode(inputs, dates, None, layout, keep_subs=["aerial", "s2", "s1_asc"])
        fast = model.encode(inputs, dates, None, layout)
        assert not fast.sub_tokens
        for name in full.patch_tokens:
            assert torch.allclose(fast.patch_tokens[name], full.patch_tokens[name], atol=1e-5)
        assert torch.allclose(fast.context_tokens[0], full.context_tokens[0], atol=1e-5)
        unoptimised = model.fuse(layout, full.patch_tokens, full.context_tokens)
        out = model.forward_features(inputs, dates, patch_size_m=20, with_dense=False)
    assert torch.allclose(out.tile, unoptimised[:, 0], atol=1e-5)
    assert torch.allclose(out.patch.reshape(2, -1, D), unoptimised[:, 1:], atol=1e-5)


def test_naive_attention_path_gives_the_same_outputs():
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2", "s1_asc", "modis"))
    with torch.no_grad():
        fast = model.forward_features(inputs, dates, patch_size_m=10)
        with explicit_attention():
            naive = model.forward_features(inputs, dates, patch_size_m=10)
    assert torch.allclose(fast.tile, naive.tile, atol=1e-5)
    assert torch.allclose(fast.dense, naive.dense, atol=1e-5)


def test_modis_is_one_context_token():
    model = small_model()
    inputs, dates = batch(60, ("s2", "modis"))
    with torch.no_grad():
        enc = model.encode(inputs, dates, None, model.layout(inputs, 10))
    assert list(enc.patch_tokens) == ["s2"]
    assert len(enc.context_tokens) == 1 and enc.context_tokens[0].shape == (2, 1, D)
    with pytest.raises(EngineError, match="besides coarse context"):
        model(*batch(60, ("modis",)), patch_size_m=10)


def test_masked_dates_are_ignored():
    """Padding dates with a date mask gives the same result as leaving them out."""
    model = small_model(names=("s2",))
    inputs, dates = batch(20, ("s2",), t=4)
    padded = {"s2": torch.cat([inputs["s2"], torch.randn(2, 3, 10, 2, 2)], dim=1)}
    pad_dates = {"s2": torch.cat([dates["s2"], torch.full((2, 3), 100.0)], dim=1)}
    mask = {"s2": torch.tensor([[True] * 4 + [False] * 3] * 2)}
    with torch.no_grad():
        ref = model(inputs, dates, patch_size_m=10, output="patch")
        out = model(padded, pad_dates, mask, patch_size_m=10, output="patch")
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: {**x, "aerial": x["aerial"][..., :, :90]}, "square"),
        (lambda x: {**x, "aerial": x["aerial"][..., :95, :95]}, "multiple of its 10-pixel"),
        (lambda x: {**x, "s2": x["s2"][..., :1, :1]}, "same ground"),
    ],
)
def test_bad_geometry_is_a_clear_error(change, message):
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2"))
    with pytest.raises(EngineError, match=message):
        model(change(inputs), dates, patch_size_m=10)


def test_patch_size_must_divide_the_tile():
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2"))
    with pytest.raises(EngineError, match="not a multiple of the 20 m"):
        model(*batch(30, ("s2",)), patch_size_m=20)
    with pytest.raises(EngineError, match="whole number of 'aerial' sub-patches"):
        model(inputs, dates, patch_size_m=5)
    with pytest.raises(EngineError, match="positive"):
        model(inputs, dates, patch_size_m=-10)
    with pytest.raises(EngineError, match="Unknown AnySat output"):
        model(inputs, dates, output="pixels")


def test_missing_bands_get_the_learned_padding_value():
    model = small_model()
    with torch.no_grad():
        model.projectors["s2"].pad_value.fill_(0.75)
    value, message = model.missing_band_fill("s2", ["B8A"])
    assert value == 0.75
    assert "1 of 10 bands missing (B8A)" in message and "learned padding value 0.75" in message
    value, note = model.missing_band_fill("aerial", ["NIR"])
    assert value == 0 and "NIR" in note
    with pytest.raises(EngineError, match="Unknown modality"):
        model.missing_band_fill("X", ["B8A"])


def test_presets_are_registered_with_the_reference_sizes():
    assert {"anysat-tiny", "anysat-small", "anysat-base"} <= set(preset_names())
    with torch.device("meta"):
        base = build_model("anysat-base")
        counts = {size: count_parameters(AnySat(anysat_config(size)))["total"] for size in ("tiny", "small")}
    parts = count_parameters(base)
    for name, millions in (
        ("total", 125.9),
        ("spatial_encoder", 42.5),
        ("combiner", 42.5),
        ("cross_block", 6.5),
        ("projectors", 34.3),
    ):
        assert abs(parts[name] / 1e6 - millions) <= 0.02 * millions, (name, parts[name])
    assert abs(counts["tiny"] / 1e6 - 8.1) <= 0.02 * 8.1
    assert abs(counts["small"] / 1e6 - 43.8) <= 0.02 * 43.8
    assert len(base.modalities) == 11


def test_config_round_trip():
    model = small_model()
    again = build_model(model.config.to_dict())
    assert again.config == model.config
    assert set(again.state_dict()) == set(model.state_dict())


def test_row_group_norm_equals_group_norm():
    """The layer-norm formulation (used outside fp32) gives GroupNorm's numbers."""
    from engine.models.ltae import RowGroupNorm

    norm = RowGroupNorm(4, 64).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(50, 64, dtype=torch.float64) * 3 + 1
    expected = torch.nn.functional.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(norm(x), expected, atol=1e-10)
    assert torch.allclose(norm.float()(x.float()), expected.float(), atol=1e-5)  # the native fp32 kernel
