"""Segmentation fine-tuning and probing with AnySat's dense head (and the patch head), saved and reloaded."""

import dataclasses

import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.models.checkpoint import load_checkpoint
from engine.models.heads import DenseSegmentationHead, LinearHead
from tests.training.layouts import experiment, write_pastis
from training.config import ExperimentConfig, from_dict, validate
from training.trainer import Trainer, prepare

# A very small AnySat on PASTIS's S2 and S1 series: 8 x 8 px tiles, 20 m patches -> 4 x 4 patches,
# an 8 x 8 dense grid of 10 m sub-patches (the label raster's resolution).
TINY_ANYSAT = {
    "embed_dim": 32,
    "depth": 1,
    "heads": 2,
    "ltae_heads": 4,
    "ltae_key_dim": 4,
    "modalities": ["s2", "s1_asc_ratio"],
}
SEGMENTATION = {"kind": "segmentation", "num_classes": 19, "ignore_index": 19, "metric": "miou"}


@pytest.fixture(scope="module")
def pastis(tmp_path_factory):
    return write_pastis(tmp_path_factory.mktemp("PASTIS") / "PASTIS", patches=4, size=8, dates=4)


def _trainer(pastis, out, objective="supervised", head=None, preset="anysat-tiny", overrides=None) -> Trainer:
    dataset = {
        "format": "pastis",
        "root": str(pastis),
        "modalities": ["s2", "s1_asc_ratio"],
        "batch_size": 2,
        "options": {"folds_train": [1, 2], "folds_val": [3, 4]},
        "patch_sizes_m": [20] if preset.startswith("anysat") else [],
    }
    task = dict(SEGMENTATION, **({"head": head} if head else {}))
    tree = experiment(
        out,
        [dataset],
        objective=objective,
        preset=preset,
        overrides=TINY_ANYSAT if overrides is None else overrides,
        task=task,
        optim={"lr": 1e-2},
        train={"max_steps": 2, "eval_every": 2},
    )
    config = from_dict(ExperimentConfig, tree)
    validate(config)
    return Trainer(config)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def _fixed_batch_losses(trainer: Trainer, steps: int) -> list[float]:
    batch = trainer.data.sampler.next(0)
    return [trainer.train_step(batch)["loss"] for _ in range(steps)]


def test_dense_head_is_the_default_for_anysat_and_fine_tunes_encoder_and_head(pastis, tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(pastis, tmp_path / "run")
    head = trainer.objective.classifier
    assert isinstance(head, DenseSegmentationHead) and head.config.kind == "dense"
    assert head.config.embed_dim == 2 * trainer.encoder.embed_dim  # patch token + sub-patch token
    encoder_before, head_before = _snapshot(trainer.encoder), _snapshot(head)
    losses = _fixed_batch_losses(trainer, 5)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert _changed(head_before, head) == set(head_before)
    changed = _changed(encoder_before, trainer.encoder)
    assert any(k.startswith("spatial_encoder.") for k in changed) and any(k.startswith("projectors.") for k in changed)
    assert "miou" in trainer.evaluate(trainer.data.val)


def test_dense_head_probe_keeps_the_encoder_fixed(pastis, tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(pastis, tmp_path / "run", objective="probe", head="dense")
    encoder_before, head_before = _snapshot(trainer.encoder), _snapshot(trainer.objective.classifier)
    losses = _fixed_batch_losses(trainer, 5)
    assert losses[-1] < losses[0]
    assert _changed(encoder_before, trainer.encoder) == set()
    assert _changed(head_before, trainer.objective.classifier) == set(head_before)


def test_checkpoint_rebuilds_the_fine_tuned_dense_head_with_equal_logits(pastis, tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(pastis, tmp_path / "run")
    trainer.fit()
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert isinstance(loaded.head, DenseSegmentationHead)
    assert loaded.metadata["head"] == {"kind": "dense", "embed_dim": 64, "n_classes": 19, "multilabel": False}
    assert loaded.metadata["classes"][0] == "Background"

    batch = trainer.data.sampler.next(0)
    batch.patch_size_m = 20.0
    batch = prepare(batch, trainer.encoder, trainer.device)
    trainer.objective.eval()
    with torch.no_grad():
        expected = trainer.objective.logits(batch)
        features = loaded.model.forward_features(batch.inputs, batch.dates, batch.date_mask, patch_size_m=20.0)
        logits = loaded.head(features.dense, output_size=tuple(batch.label.shape[-2:]))
    assert logits.shape == (2, 19, 8, 8)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    probabilities = loaded.head.probabilities(logits)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, 8, 8))


def test_patch_head_on_anysat_skips_the_dense_features(pastis, tmp_path):
    trainer = _trainer(pastis, tmp_path / "run", head="patch")
    head = trainer.objective.classifier
    assert type(head) is LinearHead and head.config.kind == "patch"
    seen = []
    forward_features = trainer.encoder.forward_features

    def spy(*args, **kwargs):
        features = forward_features(*args, **kwargs)
        seen.append(features.dense)
        return features

    trainer.encoder.forward_features = spy
    before = _snapshot(head)
    losses = _fixed_batch_losses(trainer, 2)
    assert all(torch.isfinite(torch.tensor(losses))) and seen == [None, None]
    assert _changed(before, head) == set(before)


def test_dense_head_on_omnisat_is_a_clear_error_and_auto_picks_the_patch_head(pastis, tmp_path):
    from tests.training.layouts import TINY_OMNISAT

    with pytest.raises(EngineError, match=r"task.head=dense .* OmniSat .* task.head=patch"):
        _trainer(pastis, tmp_path / "run", head="dense", preset="omnisat-pastis", overrides=TINY_OMNISAT)
    trainer = _trainer(pastis, tmp_path / "run", preset="omnisat-pastis", overrides=TINY_OMNISAT)
    assert trainer.objective.classifier.config.kind == "patch"


def test_head_key_only_for_segmentation(pastis, tmp_path):
    tree = experiment(
        tmp_path / "run",
        [{"format": "pastis", "root": str(pastis)}],
        objective="supervised",
        task={"kind": "multilabel", "head": "dense"},
    )
    with pytest.raises(EngineError, match="task.head=dense chooses a segmentation head.*task.kind=segmentation"):
        validate(from_dict(ExperimentConfig, tree))
    tree["task"] = {"kind": "segmentation", "head": "pixel"}
    with pytest.raises(EngineError, match="task.head is 'pixel'; choose one of: auto, dense, patch"):
        validate(from_dict(ExperimentConfig, tree))


def test_evaluation_sees_every_tile_when_the_split_is_not_a_multiple_of_the_batch(pastis, tmp_path):
    dataset = {
        "format": "pastis",
        "root": str(pastis),
        "modalities": ["s2"],
        "batch_size": 3,
        "patch_sizes_m": [20],
        "options": {"folds_train": [1, 2, 3, 4], "folds_val": [1, 2, 3, 4]},
    }
    tree = experiment(
        tmp_path / "run",
        [dataset],
        objective="probe",
        preset="anysat-tiny",
        overrides=dict(TINY_ANYSAT, modalities=["s2"]),
        task=SEGMENTATION,
    )
    config = from_dict(ExperimentConfig, tree)
    validate(config)
    trainer = Trainer(config)
    assert [b.size for b in trainer.data.val["pastis"].epoch_batches()] == [3, 1]
    stream = trainer.data.sampler.choices["pastis"].stream
    assert [stream.next().size for _ in range(3)] == [3, 3, 3]  # training draws full batches only


def test_real_eolearn_scenes_laid_out_as_pastis_for_segmentation(shared_data, tmp_path):
    from training.datasets.pastis import Pastis
    from training.prepare_samples import eolearn_segmentation

    root = eolearn_segmentation(shared_data, tmp_path)
    val = Pastis(root, split="val", modalities=["s2"], train=False, segmentation=True)
    assert len(val) == 5 and len(Pastis(root, split="train", modalities=["s2"], segmentation=True)) == 15
    sample = val[0]
    assert sample.inputs["s2"].shape == (5, 10, 20, 20)
    assert sample.dates["s2"].tolist() == [192.0, 212.0, 232.0, 242.0, 252.0]  # 2015-07-11 ... 09-09
    labels = np.concatenate([val[i].label.ravel() for i in range(len(val))])
    # The fourth 200 m column of eo-learn's land-cover raster: forest and grassland dominate.
    counts = np.bincount(labels, minlength=20)
    assert set(np.flatnonzero(counts)) <= {0, 1, 2, 3, 4, 19} and counts[1] > counts[2] > counts[4]


def test_a_fine_tuned_dense_head_maps_rasters_through_tiled_inference(pastis, tmp_path):
    """The exported checkpoint classifies GeoTIFFs of a tile with the probabilities the trained head gives."""
    import json

    import rasterio
    from rasterio.transform import from_origin

    from engine.ops.map_ops import ClassifyParams, classify
    from engine.runtime.progress import Reporter

    torch.manual_seed(0)
    trainer = _trainer(pastis, tmp_path / "run")
    trainer.fit()
    batch = trainer.data.val["pastis"].epoch_batches().__next__().select(slice(0, 1))
    batch.patch_size_m = 20.0
    meta = {
        f["properties"]["ID_PATCH"]: f["properties"]
        for f in json.loads((pastis / "metadata.geojson").read_text())["features"]
    }
    tile = meta[int(batch.names[0])]
    series = np.load(pastis / "DATA_S2" / f"S2_{batch.names[0]}.npy").astype(np.float32)
    files = []
    for t, day in sorted(tile["dates-S2"].items(), key=lambda kv: int(kv[0])):
        files.append(str(tmp_path / f"S2_{day}.tif"))
        with rasterio.open(
            files[-1],
            "w",
            driver="GTiff",
            width=8,
            height=8,
            count=10,
            dtype="float32",
            crs="EPSG:32631",
            transform=from_origin(600000, 5000000, 10, 10),
        ) as dst:
            dst.write(series[int(t)])
    job = {
        "model": str(tmp_path / "run" / "model.safetensors"),
        "modalities": {"s2": {"files": files}},
        "outputs": {"probabilities": str(tmp_path / "probabilities.tif")},
        "patch_size": 20,
        "tile_size": 80,
        "overlap": 0,
        "precision": "fp32",
        "device": "cpu",
    }
    classify(ClassifyParams(job), Reporter())
    with rasterio.open(tmp_path / "probabilities.tif") as src:
        mapped = torch.from_numpy(src.read())
    trainer.objective.eval()
    with torch.no_grad():
        s2_only = dataclasses.replace(
            batch,
            inputs={"s2": trainer.encoder.normalize("s2", batch.inputs["s2"])},
            dates={"s2": batch.dates["s2"]},
            date_mask={"s2": batch.date_mask["s2"]},
        )
        expected = trainer.objective.classifier.probabilities(trainer.objective.logits(s2_only))[0]
    assert mapped.shape == (19, 8, 8)
    torch.testing.assert_close(mapped, expected, rtol=0, atol=1e-5)
