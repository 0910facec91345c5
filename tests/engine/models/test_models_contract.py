"""The shared model contract: specs, position codes, attention, L-TAE, registry, heads, checkpoints."""

import math

import pytest
import torch

from engine.errors import EngineError
from engine.models import checkpoint
from engine.models.attention import Block, CrossBlock, attend, explicit_attention
from engine.models.heads import HeadConfig, LinearHead, PatchHead, build_head
from engine.models.ltae import LTAE, LTAEConfig
from engine.models.modalities import ModalitySpec, sensor
from engine.models.position import euclidean_buckets, patch_centres, sincos_2d_encoding, sinusoid_encoding
from engine.models.registry import build_model, count_parameters, preset_names
from tests.engine.omnisat_helpers import tiny_batch, tiny_config, tiny_model

torch.set_num_threads(2)


def test_modality_spec_round_trip_and_validation():
    spec = sensor("s2")
    assert ModalitySpec.from_dict(spec.to_dict()) == spec
    assert spec.n_bands == 10 and spec.kind == "series" and spec.has_dates
    with pytest.raises(EngineError, match="one of each per band"):
        ModalitySpec("x", "image", ("a", "b"), 1.0, False, (0.0,), (1.0, 1.0))
    with pytest.raises(EngineError, match="kind"):
        ModalitySpec("x", "cube", ("a",), 1.0, False, (0.0,), (1.0,))
    with pytest.raises(EngineError, match="Unknown sensor"):
        sensor("landsat-99")


def test_sinusoid_encoding_values():
    code = sinusoid_encoding(torch.tensor([[0.0, 100.0]]), 4, 367.0)
    assert code.shape == (1, 2, 4)
    expected = [math.sin(100), math.cos(100), math.sin(100 / 367**0.5), math.cos(100 / 367**0.5)]
    assert torch.allclose(code[0, 1], torch.tensor(expected), atol=1e-5)
    assert sinusoid_encoding(torch.zeros(3), 4, 367.0, repeat=3).shape == (3, 12)


def test_euclidean_buckets_follow_patch_distance():
    centres = patch_centres(1, 6, 10.0)  # one row of patches, 10 m apart
    buckets = euclidean_buckets(centres[:1], centres, unit=10.0)
    # distances 0, 1, 2, 3, 4, 5 patches -> buckets 0, 1, 2, 2, 3, 3
    assert buckets.tolist() == [[0, 1, 2, 2, 3, 3]]
    # metres / patch units: the same grid with 40 m patches gives the same buckets
    assert torch.equal(euclidean_buckets(patch_centres(1, 6, 40.0)[:1], patch_centres(1, 6, 40.0), 40.0), buckets)


def test_sincos_2d_shape():
    assert sincos_2d_encoding(torch.rand(5, 2), 16).shape == (5, 16)


def test_sdpa_matches_explicit_attention_with_bias():
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    bias = torch.randn(2, 4, 7, 7)
    fused = attend(q, k, v, bias)
    with explicit_attention():
        explicit = attend(q, k, v, bias)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_blocks_shapes_and_relative_position():
    block = Block(32, 4, norm_eps=1e-5, rel_pos_buckets=5).eval()
    x = torch.randn(2, 9, 32)
    buckets = torch.randint(0, 5, (9, 9))
    assert block(x, rel_buckets=buckets).shape == (2, 9, 32)
    cross = CrossBlock(32, 4, rel_pos_buckets=5).eval()
    queries = torch.randn(2, 3, 32)
    assert cross(queries, x, rel_buckets=buckets[:3]).shape == (2, 3, 32)
    # an additive bias of -inf on a key removes it
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., -1] = float("-inf")
    out_masked = block(x, attn_bias=mask, rel_buckets=buckets)
    x2 = x.clone()
    x2[:, -1] += 5.0
    assert torch.allclose(block(x2, attn_bias=mask, rel_buckets=buckets)[:, :-1], out_masked[:, :-1], atol=1e-5)


def test_ltae_shapes_and_zero_attention_on_padded_dates():
    torch.manual_seed(0)
    ltae = LTAE(LTAEConfig(in_channels=3, in_mlp=(8, 32), heads=4, key_dim=4, out_mlp=(32, 16))).eval()
    x = torch.randn(5, 7, 3)
    dates = torch.sort(torch.randint(1, 366, (5, 7)).float()).values
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[:, 4:] = False
    emb, attention = ltae(x, dates, mask)
    assert emb.shape == (5, 16) and attention.shape == (5, 4, 7)
    assert torch.all(attention[:, :, 4:] == 0)
    assert torch.allclose(attention.sum(-1), torch.ones(5, 4), atol=1e-5)
    # padded dates change nothing, whatever their values: same result as the truncated series
    x_garbage = x.clone()
    x_garbage[:, 4:] = 1e4
    emb_garbage, _ = ltae(x_garbage, dates, mask)
    emb_short, _ = ltae(x[:, :4], dates[:, :4])
    assert torch.allclose(emb, emb_garbage, atol=1e-5)
    assert torch.allclose(emb, emb_short, atol=1e-5)


def test_ltae_single_date():
    ltae = LTAE(LTAEConfig(in_channels=2, in_mlp=(8, 32), heads=4, key_dim=4, out_mlp=(32,))).eval()
    emb, attention = ltae(torch.randn(3, 1, 2), torch.full((3, 1), 120.0))
    assert emb.shape == (3, 32) and torch.all(attention == 1)


def test_registry_lists_presets_and_builds_from_dict():
    names = preset_names()
    for name in ("omnisat-treesatai", "omnisat-pastis", "omnisat-flair"):
        assert name in names
    with pytest.raises(EngineError, match="Unknown model preset"):
        build_model("omnisat-mars")
    model = build_model(tiny_config().to_dict())
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert set(counts) >= {"encoder.aerial", "encoder.s2", "encoder.s1_asc", "combiner", "decoder.aerial", "total"}


def test_heads_shapes():
    head = build_head(HeadConfig("classification", 32, 5, multilabel=True))
    assert isinstance(head, LinearHead)
    logits = head(torch.randn(2, 32))
    assert logits.shape == (2, 5) and torch.all((head.probabilities(logits) >= 0) & (head.probabilities(logits) <= 1))
    patch = build_head(HeadConfig("patch", 32, 3))
    assert isinstance(patch, PatchHead)
    probs = patch.probabilities(patch(torch.randn(2, 4, 4, 32)))
    assert probs.shape == (2, 4, 4, 3) and torch.allclose(probs.sum(-1), torch.ones(2, 4, 4), atol=1e-5)
    with pytest.raises(EngineError, match="head kind"):
        HeadConfig("segmentation", 32, 3)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model = tiny_model().eval()
    head = build_head(HeadConfig("classification", 32, 3, multilabel=True))
    path = tmp_path / "model.safetensors"
    checkpoint.save_checkpoint(
        path,
        model,
        head=head,
        classes=["a", "b", "c"],
        colors=["#ff0000", "#00ff00", "#0000ff"],
        provenance={"trained_on": "test"},
    )
    loaded = checkpoint.load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    assert torch.equal(head.linear.weight, loaded.head.linear.weight)
    assert loaded.metadata["classes"] == ["a", "b", "c"]
    assert loaded.metadata["provenance"] == {"trained_on": "test"}
    assert loaded.model.modalities["s2"].bands == sensor("s2").bands
    inputs, dates = tiny_batch()
    with torch.no_grad():
        a = model.forward_features(inputs, dates)
        b = loaded.model.forward_features(inputs, dates)
    assert torch.equal(a.tile, b.tile) and torch.equal(a.patch, b.patch)
    digest = checkpoint.checkpoint_hash(path)
    copy = tmp_path / "copy.safetensors"
    checkpoint.save_checkpoint(copy, loaded.model, head=loaded.head, provenance={"other": 1})
    assert checkpoint.checkpoint_hash(copy) == digest


def test_corrupted_and_foreign_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save_checkpoint(path, tiny_model())
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(EngineError, match="broken.safetensors"):
        checkpoint.load_checkpoint(broken)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EngineError, match="garbage.safetensors"):
        checkpoint.load_checkpoint(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(EngineError, match="not an engine checkpoint"):
        checkpoint.load_checkpoint(foreign)
    with pytest.raises(EngineError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "missing.safetensors")
