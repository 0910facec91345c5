"""Dense (per sub-patch) and tile (per window) embedding levels through embed, fit-probe,
apply-probe and change, on small synthetic Sentinel-2 scenes and a tiny AnySat."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.mapping.levels import EMBEDDING_LEVEL_TAG
from engine.models.anysat import ProjectorSpec
from engine.models.checkpoint import save_checkpoint
from engine.models.modalities import sensor
from engine.probes.classifiers import ProbeConfig, fit_probe
from engine.probes.probe_file import load_probe
from engine.runtime.registry import run_operation
from tests.engine import anysat_helpers, omnisat_helpers
from tests.engine.ops.test_probe_ops import ORIGIN
from tests.engine.probes.test_labels import point, write_layer
from tests.engine.rasters import write_geotiff

torch.set_num_threads(1)
D = 64  # embedding width of the test model
PATCH = 20  # metres: 2 x 2 Sentinel-2 pixels (AnySat sub-patches) per patch
NAMES = ("crop", "forest")


def scene(folder, classes: np.ndarray, dates: int = 3, seed: int = 0) -> list[str]:
    """Sentinel-2 dates whose pixels take their class's spectrum (plus noise)."""
    rng = np.random.default_rng(seed)
    spectra = rng.uniform(500, 3000, size=(2, dates, 10))  # class x date x band
    files = []
    for t in range(dates):
        data = spectra[classes, t] + rng.normal(scale=50, size=(*classes.shape, 10))
        files.append(
            str(
                write_geotiff(
                    folder / f"S2_2020060{t + 1}.tif", np.moveaxis(data, -1, 0).astype(np.float32), origin=ORIGIN
                )
            )
        )
    return files


@pytest.fixture
def anysat(tmp_path):
    """A small AnySat on Sentinel-2 without the released input GroupNorm, which normalises each
    window as a whole and so wipes out what a uniform window holds (its class here). At width
    32 its random L-TAE gives nearly the same token for any pixel: width 64."""
    path = tmp_path / "anysat.safetensors"
    save_checkpoint(
        path, anysat_helpers.small_model(names=("s2",), embed_dim=D, projectors={"s2": ProjectorSpec(dropout=0.0)})
    )
    return str(path)


def job(model, files, outputs, **extra):
    return {
        "model": model,
        "modalities": {"s2": {"files": files}},
        "patch_size": PATCH,
        "threads": 1,
        "precision": "fp32",
        "outputs": outputs,
        **extra,
    }


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.tags()


def test_dense_raster_lies_on_the_sub_patch_grid(tmp_path, anysat):
    files = scene(tmp_path, np.zeros((24, 24), np.int64))
    base = job(anysat, files, {}, tile_size=100)  # 5-patch windows, the last moved back: overlaps blend
    result = run_operation(
        "embed", {"job": dict(base, outputs={"embeddings": str(tmp_path / "dense.tif"), "embeddings_level": "dense"})}
    )
    run_operation("embed", {"job": dict(base, outputs={"embeddings": str(tmp_path / "patch.tif")})})
    dense, transform, tags = read(tmp_path / "dense.tif")
    patch, patch_transform, _ = read(tmp_path / "patch.tif")
    assert tags[EMBEDDING_LEVEL_TAG] == "dense"
    assert dense.shape == (2 * D, 24, 24) and patch.shape == (D, 12, 12)
    # One cell per 10 m sub-patch, from the patch grid's corner.
    assert tuple(transform)[:6] == (10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    assert tuple(patch_transform)[:2] == (20.0, 0.0) and (patch_transform.c, patch_transform.f) == ORIGIN
    assert result["grids"]["embeddings"]["width"] == 24
    # [patch token, sub-patch token]: the first half repeats the patch-level raster over its 2 x 2 sub-patches.
    assert np.allclose(dense[:D], patch.repeat(2, axis=1).repeat(2, axis=2), atol=1e-5)
    assert not np.allclose(dense[D:, 0::2, 0::2], dense[D:, 1::2, 1::2])  # the sub-patch tokens differ


def test_tile_raster_has_one_cell_per_window(tmp_path, anysat):
    blocks = np.arange(24) // 10
    files = scene(tmp_path, (blocks[:, None] + blocks[None, :]) % 2)  # 100 m blocks: windows that differ
    base = job(anysat, files, {"embeddings": str(tmp_path / "tile.tif"), "embeddings_level": "tile"}, tile_size=100)
    result = run_operation("embed", {"job": base})
    tiles, transform, tags = read(tmp_path / "tile.tif")
    # 12 patches, 5-patch windows edge to edge: starts 0, 5 and 7 (moved back to end on the edge).
    assert result["windows"] == 9 and tags[EMBEDDING_LEVEL_TAG] == "tile"
    assert tiles.shape == (D, 3, 3) and np.isfinite(tiles).all()
    assert tuple(transform)[:6] == (100.0, 0.0, ORIGIN[0], 0.0, -100.0, ORIGIN[1])
    # Each cell holds its window's tile vector: the same as a run over that window alone.
    x0, y1 = ORIGIN[0] + 7 * PATCH, ORIGIN[1] - 7 * PATCH
    alone = dict(
        base,
        outputs={"embeddings": str(tmp_path / "last.tif"), "embeddings_level": "tile"},
        extent={"bounds": [x0, y1 - 5 * PATCH, x0 + 5 * PATCH, y1]},
    )
    run_operation("embed", {"job": alone})
    last, _, _ = read(tmp_path / "last.tif")
    assert last.shape == (D, 1, 1)
    assert np.allclose(tiles[:, 2, 2], last[:, 0, 0], atol=1e-5)
    assert not np.allclose(tiles[:, 2, 2], tiles[:, 0, 0], atol=1e-3)
    with pytest.raises(EngineError, match="edge to edge"):
        run_operation("embed", {"job": dict(base, overlap=20)})


def test_dense_probe_recovers_a_rule_finer_than_the_patches(tmp_path, anysat):
    truth = np.random.default_rng(1).integers(0, 2, (24, 24))  # per pixel: 20 m patches mix both classes
    files = scene(tmp_path, truth)
    # Points on the upper half's pixels; the lower half is mapped without labels.
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(point(c + 0.5, r + 0.5), NAMES[truth[r, c]]) for r in range(12) for c in range(24)],
        field_type="text",
    )
    base = job(anysat, files, {"embeddings": str(tmp_path / "dense.tif"), "embeddings_level": "dense"})
    probe = str(tmp_path / "probe.safetensors")
    fit = run_operation(
        "fit-probe", {"labels": labels, "embeddings": base, "output": probe, "report": str(tmp_path / "report.html")}
    )
    assert fit["class_names"] == list(NAMES) and fit["overall_accuracy"] > 0.95
    loaded, meta = load_probe(probe)
    assert meta.level == "dense" and loaded.layer_norm and loaded.in_dim == 2 * D
    assert "confusion" in (tmp_path / "report.html").read_text().lower()

    # Applied through a job: the class map lies on the 10 m sub-patch grid and follows the stripes.
    applied = dict(base, outputs={"classes": str(tmp_path / "classes.tif"), "embeddings_level": "dense"})
    result = run_operation("apply-probe", {"probe": probe, "embeddings": applied})
    classes, transform, _ = read(tmp_path / "classes.tif")
    assert result["grids"]["classes"]["width"] == 24 and tuple(transform)[:2] == (10.0, 0.0)
    assert (classes[0, 12:] == truth[12:]).mean() > 0.95
    # Applied to the kept dense raster: the same map.
    run_operation(
        "apply-probe",
        {
            "probe": probe,
            "embeddings": str(tmp_path / "dense.tif"),
            "model": anysat,
            "classes": str(tmp_path / "raster_classes.tif"),
        },
    )
    assert (read(tmp_path / "raster_classes.tif")[0] == classes).mean() > 0.99

    # A patch-level job or raster is refused.
    with pytest.raises(EngineError, match="fitted on dense-level embeddings, but these are patch-level"):
        run_operation(
            "apply-probe", {"probe": probe, "embeddings": dict(base, outputs={"classes": str(tmp_path / "wrong.tif")})}
        )
    run_operation("embed", {"job": dict(base, outputs={"embeddings": str(tmp_path / "patch.tif")})})
    with pytest.raises(EngineError, match="fitted on dense-level embeddings, but these are patch-level"):
        run_operation(
            "apply-probe",
            {
                "probe": probe,
                "embeddings": str(tmp_path / "patch.tif"),
                "model": anysat,
                "classes": str(tmp_path / "wrong.tif"),
            },
        )
    with pytest.raises(EngineError, match="holds patch-level embeddings, not dense"):
        run_operation(
            "fit-probe",
            {
                "labels": labels,
                "embeddings": str(tmp_path / "patch.tif"),
                "model": anysat,
                "output": str(tmp_path / "p2.safetensors"),
                "embeddings_level": "dense",
            },
        )
    assert not (tmp_path / "wrong.tif").exists()


def test_tile_probe_recovers_a_rule_per_window(tmp_path, anysat):
    # 80 m windows (4 patches of 20 m, 8 pixels) in a checkerboard of classes.
    cells = (np.arange(6)[:, None] + np.arange(6)[None, :]) % 2
    files = scene(tmp_path, cells.repeat(8, 0).repeat(8, 1))
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(point(8 * c + 4, 8 * r + 4), NAMES[cells[r, c]]) for r in range(6) for c in range(6)],
        field_type="text",
    )
    base = job(anysat, files, {"embeddings": str(tmp_path / "tile.tif")}, tile_size=80)
    probe = str(tmp_path / "probe.safetensors")
    fit = run_operation(
        "fit-probe", {"labels": labels, "embeddings": base, "output": probe, "embeddings_level": "tile"}
    )
    assert fit["overall_accuracy"] > 0.9 and load_probe(probe)[1].level == "tile"
    applied = dict(base, outputs={"classes": str(tmp_path / "classes.tif")})
    run_operation("apply-probe", {"probe": probe, "embeddings": applied, "embeddings_level": "tile"})
    classes, transform, _ = read(tmp_path / "classes.tif")
    assert classes.shape == (1, 6, 6) and tuple(transform)[:2] == (80.0, 0.0)
    assert (classes[0] == cells).mean() > 0.9


def test_change_at_the_dense_level(tmp_path, anysat):
    files = scene(tmp_path, np.zeros((24, 24), np.int64))
    before = job(anysat, files, {"embeddings": str(tmp_path / "before.tif")}, tile_size=120)
    after = dict(before, outputs={"embeddings": str(tmp_path / "after.tif")})
    result = run_operation(
        "change",
        {"before": before, "after": after, "magnitude": str(tmp_path / "magnitude.tif"), "embeddings_level": "dense"},
    )
    magnitude, transform, _ = read(tmp_path / "magnitude.tif")
    assert magnitude.shape == (1, 24, 24) and tuple(transform)[:2] == (10.0, 0.0)
    assert np.nanmax(magnitude) < 1e-5 and result["metric"] == "cosine"
    assert read(tmp_path / "before.tif")[2][EMBEDDING_LEVEL_TAG] == "dense"


def test_dense_level_needs_an_anysat_model(tmp_path):
    files = scene(tmp_path, np.zeros((24, 24), np.int64))
    path = tmp_path / "omnisat.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, omnisat_helpers.tiny_model(modalities=(sensor("s2"),)).eval())
    bad = {
        "model": str(path),
        "modalities": {"s2": {"files": files}},
        "threads": 1,
        "outputs": {"embeddings": str(tmp_path / "dense.tif"), "embeddings_level": "dense"},
    }
    with pytest.raises(EngineError, match='"embeddings_level": "dense" needs per-sub-patch features'):
        run_operation("embed", {"job": bad})
    assert not (tmp_path / "dense.tif").exists()


def test_dense_probe_normalises_each_vector_first():
    """The dense probe is LayerNorm + linear (the segmentation head): it ignores each vector's scale and offset."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    probe = fit_probe(x, y, 2, ProbeConfig(layer_norm=True))
    scale = rng.uniform(0.5, 4.0, size=(400, 1)).astype(np.float32)
    shift = rng.normal(size=(400, 1)).astype(np.float32)
    assert np.allclose(probe.predict_proba(x * scale + shift), probe.predict_proba(x), atol=1e-4)
    assert (probe.predict(x) == y).mean() > 0.95
    plain = fit_probe(x, y, 2, ProbeConfig())
    assert not np.allclose(plain.predict_proba(x * scale + shift), plain.predict_proba(x), atol=1e-2)


def test_classify_with_a_checkpoint_dense_head_maps_the_sub_patch_grid(tmp_path):
    from engine.models.heads import HeadConfig, build_head

    model = anysat_helpers.small_model(names=("s2",), embed_dim=D, projectors={"s2": ProjectorSpec(dropout=0.0)})
    head = build_head(HeadConfig("dense", 2 * D, 2))
    with torch.no_grad():  # logits: two sub-patch token channels (the LayerNorm keeps their order)
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.linear.weight[0, D] = head.linear.weight[1, D + 1] = 1.0
    path = tmp_path / "segmentation.safetensors"
    save_checkpoint(path, model, head=head, classes=list(NAMES), colors=["#1b7837", "#999999"])
    files = scene(tmp_path, np.random.default_rng(2).integers(0, 2, (24, 24)))
    outputs = {
        "classes": str(tmp_path / "classes.tif"),
        "embeddings": str(tmp_path / "dense.tif"),
        "embeddings_level": "dense",
    }
    result = run_operation("classify", {"job": job(str(path), files, outputs, tile_size=100)})
    assert result["head_level"] == "dense"
    classes, transform, _ = read(tmp_path / "classes.tif")
    dense, _, _ = read(tmp_path / "dense.tif")
    assert classes.shape == (1, 24, 24) and tuple(transform)[:2] == (10.0, 0.0)
    # Per sub-patch, the class whose channel is larger; blending overlapping windows averages
    # probabilities, not features, so compare where the two channels clearly differ.
    clear = np.abs(dense[D] - dense[D + 1]) > 0.05
    assert clear.mean() > 0.5
    assert (classes[0][clear] == np.argmax(dense[D : D + 2], axis=0)[clear]).all()


def test_a_small_row_budget_writes_the_same_dense_raster(tmp_path, anysat, monkeypatch):
    import engine.mapping.run

    files = scene(tmp_path, np.random.default_rng(3).integers(0, 2, (24, 24)))
    base = job(anysat, files, {"embeddings": str(tmp_path / "a.tif"), "embeddings_level": "dense"}, tile_size=80)
    run_operation("embed", {"job": base})
    monkeypatch.setattr(engine.mapping.run, "BAND_BUDGET_MB", 0)  # flush after every row of patches
    run_operation(
        "embed", {"job": dict(base, outputs={"embeddings": str(tmp_path / "b.tif"), "embeddings_level": "dense"})}
    )
    assert np.array_equal(read(tmp_path / "a.tif")[0], read(tmp_path / "b.tif")[0])
