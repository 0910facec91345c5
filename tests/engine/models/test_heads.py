"""The head registry: one linear head serves tile, patch and dense features; dense heads in checkpoints."""

from __future__ import annotations

import pytest
import torch

from engine.errors import EngineError
from engine.models import checkpoint
from engine.models.heads import DenseSegmentationHead, HeadConfig, LinearHead, build_head, head_input_width
from tests.engine.anysat_helpers import batch as anysat_batch
from tests.engine.anysat_helpers import small_model as small_anysat
from tests.engine.omnisat_helpers import tiny_model as tiny_omnisat

torch.set_num_threads(1)


def test_registry_builds_each_kind_from_its_config():
    tile, patch = build_head(HeadConfig("classification", 8, 3)), build_head(HeadConfig("patch", 8, 3))
    dense = build_head(HeadConfig("dense", 16, 3))
    assert type(tile) is LinearHead and type(patch) is LinearHead and isinstance(dense, DenseSegmentationHead)
    # Tile and patch heads keep the weight names of the files written before the dense kind existed.
    assert set(patch.state_dict()) == {"linear.weight", "linear.bias"}
    assert set(dense.state_dict()) == {"norm.weight", "norm.bias", "linear.weight", "linear.bias"}
    assert tile(torch.randn(2, 8)).shape == (2, 3) and patch(torch.randn(2, 4, 4, 8)).shape == (2, 4, 4, 3)
    logits = dense(torch.randn(2, 4, 4, 16), output_size=(12, 12))
    assert logits.shape == (2, 3, 12, 12)
    torch.testing.assert_close(dense.probabilities(logits).sum(1), torch.ones(2, 12, 12))
    with pytest.raises(EngineError, match="cannot be multi-label"):
        HeadConfig("dense", 16, 3, multilabel=True)


def test_dense_head_width_follows_the_model_and_omnisat_has_none():
    assert head_input_width("dense", small_anysat()) == 64 and head_input_width("patch", small_anysat()) == 32
    with pytest.raises(EngineError, match="only AnySat models give.*OmniSat"):
        head_input_width("dense", tiny_omnisat())


def test_dense_head_checkpoint_round_trip_gives_equal_logits(tmp_path):
    model = small_anysat(names=("s2", "s1_asc"))
    torch.manual_seed(3)
    head = build_head(HeadConfig("dense", 2 * model.embed_dim, 4))
    path = checkpoint.save_checkpoint(tmp_path / "seg.safetensors", model, head=head, classes=list("abcd"))
    loaded = checkpoint.load_checkpoint(path)
    assert isinstance(loaded.head, DenseSegmentationHead) and loaded.head.config == head.config
    inputs, dates = anysat_batch(extent_m=40, names=("s2", "s1_asc"))
    with torch.no_grad():
        dense = model.forward_features(inputs, dates, patch_size_m=20).dense
        again = loaded.model.forward_features(inputs, dates, patch_size_m=20).dense
        assert torch.equal(head.eval()(dense, (8, 8)), loaded.head(again, (8, 8)))


def test_a_head_that_does_not_fit_the_model_is_refused(tmp_path):
    omnisat = tiny_omnisat()
    with pytest.raises(EngineError, match="only AnySat models give"):
        checkpoint.save_checkpoint(tmp_path / "x.safetensors", omnisat, head=build_head(HeadConfig("dense", 64, 2)))
    with pytest.raises(EngineError, match="reads features 48 wide, but the model gives 64"):
        checkpoint.save_checkpoint(
            tmp_path / "x.safetensors", small_anysat(), head=build_head(HeadConfig("dense", 48, 2))
        )
    assert not (tmp_path / "x.safetensors").exists()
