"""Local (pre-fusion) per-patch features: they follow each patch's own pixels, and their
embedding level travels from the job through the raster into the probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.io.job import load_job
from engine.mapping.levels import EMBEDDING_LEVEL_TAG
from engine.models.checkpoint import save_checkpoint
from engine.models.modalities import sensor
from engine.probes.probe_file import load_probe
from engine.runtime.registry import run_operation
from tests.engine import anysat_helpers, omnisat_helpers
from tests.engine.ops.test_probe_ops import ORIGIN
from tests.engine.probes.test_labels import box, write_layer
from tests.engine.rasters import write_geotiff

torch.set_num_threads(1)


def changed_patches(before: torch.Tensor, after: torch.Tensor) -> set[tuple[int, int]]:
    """(row, col) of the patches of the first sample whose features moved."""
    moved = (after[0] - before[0]).abs().amax(dim=-1) > 1e-6
    return {(int(r), int(c)) for r, c in moved.nonzero().tolist()}


def test_omnisat_local_features_follow_only_their_own_patch():
    model = omnisat_helpers.tiny_model().eval()
    inputs, dates = omnisat_helpers.tiny_batch(grid=(3, 3))
    with torch.no_grad():
        before = model.forward_features(inputs, dates)
        for name in ("aerial", "s2"):  # an image and a series: one patch's pixels change
            changed = {k: v.clone() for k, v in inputs.items()}
            if name == "aerial":
                changed[name][:, :, 50:100, 100:150] += torch.randn(2, 4, 50, 50)  # patch (1, 2): 50 px per patch
            else:
                changed[name][:, :, :, 1, 2] += torch.randn(changed[name][:, :, :, 1, 2].shape)
            after = model.forward_features(changed, dates)
            assert changed_patches(before.local, after.local) == {(1, 2)}
            # The fused patch features mix the tile: the change reaches other patches too.
            assert len(changed_patches(before.patch, after.patch)) > 1


@pytest.mark.parametrize("names", [("aerial", "s2", "s1_asc"), ("s2",), ("aerial", "s1_asc")])
def test_omnisat_local_shapes_for_modality_subsets(names):
    model = omnisat_helpers.tiny_model().eval()
    inputs, dates = omnisat_helpers.tiny_batch(grid=(2, 3))
    inputs = {n: inputs[n] for n in names}
    dates = {n: d for n, d in dates.items() if n in names}
    with torch.no_grad():
        features = model.forward_features(inputs, dates)
        encoded = model.encode(inputs, dates)
    assert features.local.shape == features.patch.shape == (2, 2, 3, model.embed_dim)
    # The mean over the modalities given of their encoder tokens, on the patch grid.
    tokens = torch.stack(list(encoded.tokens.values())).mean(dim=0)
    assert torch.allclose(features.local.reshape(2, 6, -1), tokens, atol=1e-6)


def test_anysat_local_features_follow_only_their_own_patch():
    model = anysat_helpers.small_model(names=("aerial", "s2", "s1_asc"))
    inputs, dates = anysat_helpers.batch(extent_m=30, names=("aerial", "s2", "s1_asc"))
    with torch.no_grad():
        before = model.forward_features(inputs, dates, patch_size_m=10, with_dense=False)
        changed = {k: v.clone() for k, v in inputs.items()}
        changed["aerial"][:, :, 0:50, 50:100] += torch.randn(2, 4, 50, 50)  # patch (0, 1): 50 px of 0.2 m
        after = model.forward_features(changed, dates, patch_size_m=10, with_dense=False)
    assert before.local.shape == before.patch.shape == (2, 3, 3, model.embed_dim)
    assert changed_patches(before.local, after.local) == {(0, 1)}
    assert len(changed_patches(before.patch, after.patch)) > 1


@pytest.mark.parametrize("names", [("aerial",), ("s2", "s1_asc")])
def test_anysat_local_shapes_for_modality_subsets(names):
    model = anysat_helpers.small_model(names=("aerial", "s2", "s1_asc"))
    inputs, dates = anysat_helpers.batch(extent_m=20, names=names)
    with torch.no_grad():
        features = model.forward_features(inputs, dates, patch_size_m=10, with_dense=False)
    assert features.local.shape == features.patch.shape == (2, 2, 2, model.embed_dim)
    assert torch.isfinite(features.local).all()


def test_job_embeddings_level_is_parsed_and_checked(tmp_path):
    job = {"model": "m.safetensors", "modalities": {"s2": {"files": "a.tif"}}, "outputs": {"embeddings": "e.tif"}}
    assert load_job(job).outputs.embeddings_level == "patch"
    job["outputs"]["embeddings_level"] = "both"
    assert load_job(job).outputs.embeddings_level == "both"
    job["outputs"]["embeddings_level"] = "fused"
    with pytest.raises(EngineError, match="embeddings_level"):
        load_job(job)


# ---- the level through embed -> fit-probe -> apply-probe, on a small synthetic S2 scene

SIZE = 24  # 10 m cells; classes are 4-column stripes with distinct spectra


def s2_scene(folder):
    rng = np.random.default_rng(0)
    classes = (np.arange(SIZE) // 4 % 2)[None, :].repeat(SIZE, 0)
    spectra = rng.uniform(500, 3000, size=(2, 3, 10))  # class x date x band
    files = []
    for t in range(3):
        data = spectra[classes, t] + rng.normal(scale=50, size=(SIZE, SIZE, 10))
        files.append(
            str(
                write_geotiff(
                    folder / f"S2_2020060{t + 1}.tif", np.moveaxis(data, -1, 0).astype(np.float32), origin=ORIGIN
                )
            )
        )
    return files, classes


def test_level_round_trip_and_mismatch(tmp_path):
    files, truth = s2_scene(tmp_path)
    torch.manual_seed(0)
    model = omnisat_helpers.tiny_model(modalities=(sensor("s2"),)).eval()
    save_checkpoint(tmp_path / "model.safetensors", model)
    names = ("crop", "forest")
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(box(c, 2, c + 4, 22), names[(c // 4) % 2]) for c in range(0, SIZE, 4)],
        field_type="text",
    )
    job = {
        "model": str(tmp_path / "model.safetensors"),
        "modalities": {"s2": {"files": files}},
        "outputs": {"embeddings": str(tmp_path / "local.tif"), "embeddings_level": "local"},
        "tile_size": 80,
        "threads": 1,
        "precision": "fp32",
        "batch_size": 16,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    probe = str(tmp_path / "probe.safetensors")
    fit = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": str(tmp_path / "job.json"),
            "output": probe,
            "classes": str(tmp_path / "fit_classes.tif"),
        },
    )
    assert fit["class_names"] == list(names)
    with rasterio.open(tmp_path / "local.tif") as ds:  # the kept raster says its level
        assert ds.tags()[EMBEDDING_LEVEL_TAG] == "local" and ds.count == model.embed_dim
    assert load_probe(probe)[1].level == "local"

    # Applied through a job of the same level, the probe reads the local features again.
    apply_job = dict(job, outputs={"classes": str(tmp_path / "classes.tif"), "embeddings_level": "local"})
    run_operation("apply-probe", {"probe": probe, "embeddings": apply_job})
    with rasterio.open(tmp_path / "classes.tif") as ds, rasterio.open(tmp_path / "fit_classes.tif") as fitted:
        assert ds.shape == fitted.shape
        assert (ds.read(1) == fitted.read(1)).mean() > 0.999  # local features do not depend on the window
    # And on the kept raster.
    run_operation(
        "apply-probe",
        {"probe": probe, "embeddings": str(tmp_path / "local.tif"), "classes": str(tmp_path / "raster_classes.tif")},
    )

    # Fused patch features (the job's default level) are refused, through a job or a raster.
    with pytest.raises(EngineError, match="fitted on local-level embeddings, but these are patch-level"):
        run_operation(
            "apply-probe", {"probe": probe, "embeddings": dict(job, outputs={"classes": str(tmp_path / "wrong.tif")})}
        )
    run_operation(
        "embed", {"job": dict(job, outputs={"embeddings": str(tmp_path / "both.tif"), "embeddings_level": "both"})}
    )
    with rasterio.open(tmp_path / "both.tif") as ds:
        assert ds.tags()[EMBEDDING_LEVEL_TAG] == "both" and ds.count == 2 * model.embed_dim
        with rasterio.open(tmp_path / "local.tif") as local:  # [patch, local]: its second half is the local raster
            assert np.allclose(ds.read()[model.embed_dim :], local.read(), atol=1e-5, equal_nan=True)
    with pytest.raises(EngineError, match="fitted on local-level embeddings, but these are both-level"):
        run_operation(
            "apply-probe",
            {
                "probe": probe,
                "embeddings": str(tmp_path / "both.tif"),
                "model": str(tmp_path / "model.safetensors"),
                "classes": str(tmp_path / "wrong.tif"),
            },
        )
    assert not (tmp_path / "wrong.tif").exists()


def test_change_refuses_periods_of_different_levels(tmp_path):
    from tests.engine.ops.test_probe_ops import embeddings_raster

    before, _ = embeddings_raster(tmp_path / "before.tif")
    after, _ = embeddings_raster(tmp_path / "after.tif", seed=1)
    with rasterio.open(after, "r+") as ds:
        ds.update_tags(**{EMBEDDING_LEVEL_TAG: "local"})
    with pytest.raises(EngineError, match=r"different levels \(patch vs local\)"):
        run_operation("change", {"before": before, "after": after, "magnitude": str(tmp_path / "m.tif")})
    assert not (tmp_path / "m.tif").exists()
