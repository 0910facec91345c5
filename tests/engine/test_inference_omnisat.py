"""classify end to end with a real OmniSat architecture (random weights) on real rasters.

TreeSatAI-TS tile: the aerial GeoTIFF plus Sentinel-2 / Sentinel-1 dates written as
GeoTIFFs named by their real product names (dates read from the names), cloud
probability masks; eo-learn patch: a multi-window Sentinel-2 run with statistics
computed by normalization-stats.
"""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch

from engine.io.writers import CLASS_NODATA
from engine.models.checkpoint import save_checkpoint
from engine.models.heads import HeadConfig, build_head
from engine.models.registry import build_model
from engine.runtime.registry import run_operation
from tests.engine.raster_fixtures import L1C_BANDS, eolearn_corner, write_described

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(2)
S2_TREESAT = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    head = build_head(HeadConfig("patch", model.embed_dim, 3))
    path = tmp_path_factory.mktemp("model") / "omnisat.safetensors"
    save_checkpoint(
        path,
        model,
        head=head,
        classes=["conifer", "broadleaf", "open"],
        colors=["#00441b", "#74c476", "#fee391"],
        provenance={"weights": "random, for tests"},
    )
    return path


def test_treesatai_tile_all_modalities(shared_data, tmp_path, checkpoint):
    sample = shared_data / "treesatai_sample"
    aerial = sample / "Abies_alba_1_1005_WEFL_NLF.tif"
    with rasterio.open(aerial) as ds:
        corner, crs = (ds.bounds.left, ds.bounds.top), ds.crs.to_string()
    with h5py.File(sample / "Abies_alba_1_1005_WEFL_NLF.h5", "r") as f:
        s2, s2_masks = f["sen-2-data"][:12], f["sen-2-masks"][:12, 1]  # channel 1: cloud probability (0-100)
        s2_names = [p.decode() for p in f["sen-2-products"][:12]]
        s1, s1_names = f["sen-1-asc-data"][:8], [p.decode() for p in f["sen-1-asc-products"][:8]]
    (tmp_path / "s2").mkdir()
    for t, name in enumerate(s2_names):
        write_described(tmp_path / "s2" / f"{name}.tif", s2[t], corner, crs=crs, descriptions=S2_TREESAT)
        write_described(tmp_path / f"cloud_{t:02d}.tif", s2_masks[t][None], corner, crs=crs)
    (tmp_path / "s1").mkdir()
    for t, name in enumerate(s1_names):
        write_described(tmp_path / "s1" / f"{name}.tif", s1[t], corner, crs=crs, descriptions=("VV", "VH"))
    job = {
        "model": str(checkpoint),
        "modalities": {
            "aerial": {"files": str(aerial)},
            "s2": {
                "files": "s2",
                "mask": {"files": [f"cloud_{t:02d}.tif" for t in range(12)], "type": "probability", "threshold": 50},
            },
            "s1_asc": {"files": "s1"},
        },
        "outputs": {"classes": "classes.tif", "confidence": "confidence.tif", "embeddings": "embeddings.tif"},
        "device": "cpu",
        "threads": 2,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = run_operation("classify", {"job": str(tmp_path / "job.json")})
    assert result["windows"] == 1 and result["dates"]["s2"][0] == "2020-01-02"
    assert result["dates"]["s1_asc"][:2] == ["2020-01-03", "2020-01-09"]
    with rasterio.open(tmp_path / "classes.tif") as c, rasterio.open(tmp_path / "embeddings.tif") as e:
        assert c.crs.to_epsg() == 25832 and c.res == pytest.approx((0.2, 0.2)) and (c.width, c.height) == (300, 300)
        assert (e.width, e.height, e.count) == (6, 6, 256)
        classes, emb = c.read(1), e.read()
    assert set(np.unique(classes)) <= {0, 1, 2} and np.isfinite(emb).all()
    # One class per 10 m patch (50 x 50 px at 0.2 m).
    blocks = classes.reshape(6, 50, 6, 50)
    assert (blocks == blocks[:, :1, :, :1]).all()

    # The worker (the QGIS side's path) runs the same job object and streams JSON lines.
    job["outputs"] = {"classes": "worker_classes.tif"}
    request = {"protocol": 1, "operation": "classify", "params": {"job": str(tmp_path / "job.json")}, "threads": 2}
    (tmp_path / "job.json").write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "worker"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert messages[0]["type"] == "hello" and messages[-1]["type"] == "result"
    assert any(m["type"] == "progress" and m["percent"] == 100 for m in messages)
    assert messages[-1]["outputs"] == {"classes": str(tmp_path / "worker_classes.tif")}
    with rasterio.open(tmp_path / "worker_classes.tif") as w:
        np.testing.assert_array_equal(w.read(1), classes)


def test_eolearn_sentinel2_multi_window_with_own_statistics(shared_data, tmp_path, checkpoint):
    scenes = np.load(shared_data / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((shared_data / "eolearn_patch/TestEOPatch/timestamps.json").read_text())[:5]
    corner = eolearn_corner(shared_data)
    stack = scenes.transpose(0, 3, 1, 2).reshape(5 * 13, 101, 100)  # dates x 13 L1C bands
    data = stack.copy()
    data[:, 90:, :] = np.nan  # a strip without data
    for t, s in enumerate(stamps):
        write_described(tmp_path / f"S2_{s[:10]}.tif", data[t * 13 : (t + 1) * 13], corner, descriptions=L1C_BANDS)
    job = {
        "model": str(checkpoint),
        "modalities": {
            "s2": {
                "files": [str(tmp_path / f"S2_{s[:10]}.tif") for s in stamps],
                "bands": [L1C_BANDS.index(b) + 1 for b in S2_TREESAT],
            }
        },
        "outputs": {"classes": str(tmp_path / "classes.tif")},
        "device": "cpu",
        "threads": 2,
        "batch_size": 16,
    }
    stats = run_operation("normalization-stats", {"job": job, "output": str(tmp_path / "stats.json")})["statistics"]
    assert 0 < stats["s2"]["mean"][0] < 1  # L1C reflectance 0..1, not the checkpoint's x 10000 scale
    job["normalization"] = str(tmp_path / "stats.json")
    result = run_operation("classify", {"job": job})
    assert result["windows"] == 20 * 20 and result["patch_size_m"] == 10
    with rasterio.open(tmp_path / "classes.tif") as c:
        classes = c.read(1)
        assert c.transform.c == corner[0] and c.transform.f == corner[1] and (c.width, c.height) == (100, 101)
    assert (classes[90:] == CLASS_NODATA).all() and (classes[:90] != CLASS_NODATA).all()
