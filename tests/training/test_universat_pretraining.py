"""UniverSat's self-supervised objective (engine.models.universat_ssl) and learn-area with a UniverSat model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.models.checkpoint import checkpoint_hash, load_checkpoint, save_checkpoint
from engine.models.universat import UniverSat, universat_config
from engine.models.universat_ssl import (
    UniverSatSSL,
    UniverSatSSLConfig,
    cross_sensor_nce,
    draw_bands,
    draw_dates,
    prediction_nce,
    split_patches,
)
from engine.runtime.registry import run_operation
from tests.engine.probes.test_labels import box, write_layer
from tests.engine.test_local_features import SIZE, s2_scene

NOTHING_DROPPED = UniverSatSSLConfig(
    hidden_share=0.0, band_alpha=math.inf, monodate_chance=0.0, date_drop=0.0, sensor_drop=0.0
)


def tiny(sensors=("s2", "s1")) -> UniverSat:
    torch.manual_seed(0)
    return UniverSat(universat_config("tiny", sensors))


def batch(b: int = 2, side: int = 16) -> tuple[dict, dict]:
    torch.manual_seed(1)
    inputs = {"s2": torch.randn(b, 5, 10, side, side), "s1": torch.randn(b, 4, 3, side, side)}
    dates = {"s2": torch.tensor([[10.0, 50, 120, 200, 300]] * b), "s1": torch.tensor([[20.0, 90, 180, 250]] * b)}
    return inputs, dates


def test_the_masked_encoder_with_every_patch_visible_and_nothing_dropped_is_the_model():
    model = tiny().eval()
    ssl = UniverSatSSL(model, NOTHING_DROPPED)
    inputs, dates = batch()
    visible = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        seen = ssl.encode_visible(inputs, dates, {}, 40.0, 4, visible)
        reference = model.tokens(inputs, dates, 40.0)
    assert seen.tokens.shape == reference.shape == (2, 4 + 16, 192)
    assert (seen.tokens - reference).abs().max() < 1e-5


def test_the_encoder_sees_only_the_visible_patches():
    """A hidden patch's pixels do not reach the visible tokens (they reach the targets only)."""
    model = tiny().eval()
    ssl = UniverSatSSL(model, NOTHING_DROPPED)
    inputs, dates = batch()
    visible = torch.tensor([[0, 5, 10, 15], [1, 2, 3, 4]])
    with torch.no_grad():
        before = ssl.encode_visible(inputs, dates, {}, 40.0, 4, visible).tokens
        changed = {n: x.clone() for n, x in inputs.items()}
        for x in changed.values():
            x[..., 4:8, 0:4] += 5.0  # patch 4 of both samples: hidden in sample 0 only
        after = ssl.encode_visible(changed, dates, {}, 40.0, 4, visible).tokens
    assert torch.equal(before[0], after[0])
    assert not torch.equal(before[1], after[1])  # sample 1's patch 4 is visible: its tokens change


def test_masks_are_drawn_as_the_release_draws_them():
    torch.manual_seed(0)
    visible, hidden = split_patches(16, 0.75, 3)
    assert visible.shape == (3, 4) and hidden.shape == (3, 12)
    for v, h in zip(visible, hidden):
        assert sorted(torch.cat([v, h]).tolist()) == list(range(16)) and torch.equal(v, v.sort().values)
    counts = []
    for _ in range(200):
        kept = draw_bands(10, 5.0, 2).tolist()
        assert kept == sorted(set(kept)) and 1 <= len(kept) <= 10
        # at most two circular runs of kept bands
        on = [i in kept for i in range(10)]
        assert sum(on[i] and not on[i - 1] for i in range(10)) <= 2 or all(on)
        counts.append(len(kept))
    keep_rate = 1 - 1 / (1 + math.sqrt(5 / 10))
    assert abs(np.mean(counts) - (1 + 9 * keep_rate)) < 0.5
    valid = torch.tensor([True, False, True, True, False, True])
    for _ in range(50):
        kept = draw_dates(valid, 0.1, 0.5).tolist()
        assert kept and set(kept) <= {0, 2, 3, 5} and kept == sorted(kept)


def test_the_losses_reward_the_right_match():
    torch.manual_seed(0)
    target = torch.randn(2, 12, 32)
    shuffled = target[:, torch.randperm(12)]
    assert prediction_nce(target, target, 0.1) < 0.01 < prediction_nce(shuffled, target, 0.1)
    s2 = torch.randn(2, 6, 32)
    aligned = cross_sensor_nce([s2, s2 + 0.01 * torch.randn_like(s2)], 0.2)
    unrelated = cross_sensor_nce([s2, torch.randn_like(s2)], 0.2)
    assert aligned < unrelated
    assert cross_sensor_nce([s2], 0.2) == 0  # one sensor: no pair to contrast


def test_one_step_trains_the_encoder_the_predictor_and_the_heads():
    model = tiny()
    ssl = UniverSatSSL(model, UniverSatSSLConfig(sensor_drop=0.0))  # both sensors fused: the fusion's query learns
    inputs, dates = batch()
    terms = ssl(inputs, dates, {"s2": torch.ones(2, 5, dtype=torch.bool)}, 40.0)
    assert set(terms) >= {"loss", "prediction", "contrast", "prediction.s1", "prediction.s2"}
    assert torch.isfinite(terms["loss"])
    # 16 patches per tile, 12 hidden: chance level of the InfoNCE over the batch's 24 hidden patches
    assert abs(float(terms["prediction.s2"].detach()) - math.log(24)) < 1.0
    terms["loss"].backward()
    for part in (model.blocks[0].attn.wq, model.fusion.attn.wq, ssl.predictor.blocks[-1].mlp.fc2, ssl.heads["s2"]):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0


def test_a_sensor_off_the_shared_patch_grid_is_refused_with_the_fix():
    model = tiny(("s2", "l7"))
    ssl = UniverSatSSL(model)
    inputs = {"s2": torch.randn(1, 2, 10, 12, 12), "l7": torch.randn(1, 2, 6, 4, 4)}
    dates = {"s2": torch.tensor([[1.0, 2]]), "l7": torch.tensor([[1.0, 2]])}
    with pytest.raises(EngineError, match="'l7' gives 4 x 4 patches"):
        ssl(inputs, dates, None, 40.0)


def test_learn_area_with_a_universat_model_writes_a_model_that_embeds_and_fits(tmp_path):
    files, _ = s2_scene(tmp_path)
    save_checkpoint(tmp_path / "parent.safetensors", tiny(("s2",)).eval())
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(box(c, 2, c + 4, 22), ("crop", "forest")[(c // 4) % 2]) for c in range(0, SIZE, 4)],
        field_type="text",
    )
    job = {
        "model": str(tmp_path / "parent.safetensors"),
        "modalities": {"s2": {"files": files}},
        "outputs": {"embeddings": str(tmp_path / "never.tif")},
        "tile_size": 80,
        "patch_size": 40,
        "threads": 1,
        "precision": "fp32",
    }
    output = tmp_path / "learned.safetensors"
    result = run_operation(
        "learn-area",
        {"job": job, "output": str(output), "steps": 2, "batch_size": 2, "threads": 1, "labels": labels},
    )
    assert result["steps"] == 2 and len(result["loss_curve"]) == 2
    assert checkpoint_hash(output) != checkpoint_hash(tmp_path / "parent.safetensors")  # the weights moved
    assert isinstance(load_checkpoint(output).model, UniverSat)
    for key in ("before", "after"):
        assert result[key]["validation_cells"] > 0 and 0.0 <= result[key]["macro_f1"] <= 1.0
    embedded = tmp_path / "embeddings.tif"
    job = dict(job, model=str(output), outputs={"embeddings": str(embedded), "embeddings_level": "patch"})
    run_operation("embed", {"job": job})
    with rasterio.open(embedded) as src:
        assert src.count == 192 and np.isfinite(src.read()).all()
