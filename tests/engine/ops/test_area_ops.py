"""sample-map then area-report, end to end through the operation registry."""

from __future__ import annotations

import csv
from html import escape

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.transform import from_origin

from engine.analysis.area import stratified_estimate
from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.writers import CLASS_NODATA, open_class_map
from engine.runtime.registry import run_operation

NAMES = ["water", "forest", "crop"]
TRANSFORM = from_origin(500000.0, 5000000.0, 20.0, 20.0)


def class_map(path, crs="EPSG:32633"):
    rng = np.random.default_rng(0)
    data = np.ones((60, 50), np.uint8)  # forest
    data[:, :8] = 0  # water
    data[30:, 20:] = 2  # crop
    data[rng.random(data.shape) < 0.01] = CLASS_NODATA
    with open_class_map(
        path, Grid(rasterio.crs.CRS.from_user_input(crs), TRANSFORM, 50, 60), NAMES, ["#0000ff", "#00aa00", "#ffff00"]
    ) as ds:
        ds.write(data, 1)
    return str(path), data


def read_points(path):
    source = ogr.Open(str(path))
    layer = source.GetLayer(0)
    out = []
    for f in layer:
        geom = f.GetGeometryRef()
        out.append((geom.GetX(), geom.GetY(), f.GetField("map_code"), f.GetField("map_class"), f.GetField("reference")))
    return out


def fill_reference(path, truth_of):
    source = ogr.Open(str(path), 1)
    layer = source.GetLayer(0)
    for f in layer:
        geom = f.GetGeometryRef()
        f.SetField("reference", truth_of(geom.GetX(), geom.GetY(), f.GetField("map_class")))
        layer.SetFeature(f)
    source = None


def test_sample_then_estimate(tmp_path):
    path, data = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    result = run_operation("sample-map", {"classes": path, "output": str(sample), "total": 120, "min_per_class": 30})
    pixels = {n: int((data == k).sum()) for k, n in enumerate(NAMES)}
    assert result["mapped_pixels"] == pixels and result["samples"] == 120
    per_class = result["samples_per_class"]
    assert 30 <= per_class["water"] < per_class["crop"] < per_class["forest"]  # floor, then by area
    points = read_points(sample)
    assert len(points) == 120
    cells = set()
    for x, y, code, name, reference in points:
        col, row = ~TRANSFORM * (x, y)
        assert data[int(row), int(col)] == code and NAMES[code] == name and reference is None
        cells.add((int(row), int(col)))
    assert len(cells) == 120  # without replacement

    # The ground truth: the right-most 5 forest columns are really crop.
    def truth(x, y, mapped):
        col, _ = ~TRANSFORM * (x, y)
        return "crop" if mapped == "forest" and col >= 45 else mapped

    fill_reference(sample, truth)
    out, html = tmp_path / "areas.csv", tmp_path / "areas.html"
    report = run_operation(
        "area-report", {"classes": path, "reference": str(sample), "output": str(out), "html": str(html)}
    )
    counts = np.zeros((3, 3), int)
    for x, y, code, name, _ in points:
        counts[code, NAMES.index(truth(x, y, name))] += 1
    expected = stratified_estimate(counts, [pixels[n] for n in NAMES], NAMES, 400.0)
    assert report["error_matrix"] == counts.tolist()
    rows = list(csv.reader(out.open()))
    assert rows[0][0] == "class" and "estimated_area (m2)" in rows[0]
    by_class = {r[0]: dict(zip(rows[0], r)) for r in rows[1:4]}
    assert float(by_class["crop"]["estimated_area (m2)"]) == pytest.approx(expected.area[2])
    assert float(by_class["crop"]["estimated_area (m2)"]) > pixels["crop"] * 400.0  # corrected upwards
    assert rows[-1][0] == "overall accuracy" and float(rows[-1][1]) == pytest.approx(expected.overall_accuracy)
    text = html.read_text()
    assert "95% interval" in text and "Olofsson" in text and "crop" in text
    # Water and crop points are all right in this truth: their zero standard errors are flagged.
    assert report["caveats"] == expected.caveats() and len(report["caveats"]) == 2
    assert all(escape(c) in text for c in report["caveats"])


def test_reference_classes_that_are_not_the_maps_are_named(tmp_path):
    path, _ = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    run_operation("sample-map", {"classes": path, "output": str(sample), "total": 60, "min_per_class": 10})
    fill_reference(sample, lambda x, y, mapped: "wetland" if mapped == "water" else mapped)
    with pytest.raises(EngineError, match="'wetland'.*not classes of the map.*water, forest, crop"):
        run_operation("area-report", {"classes": path, "reference": str(sample), "output": str(tmp_path / "a.csv")})
    assert not (tmp_path / "a.csv").exists()


def test_codes_are_accepted_as_reference_values(tmp_path):
    path, _ = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    run_operation("sample-map", {"classes": path, "output": str(sample), "total": 60, "min_per_class": 10})
    fill_reference(sample, lambda x, y, mapped: str(NAMES.index(mapped)))
    report = run_operation(
        "area-report", {"classes": path, "reference": str(sample), "output": str(tmp_path / "a.csv")}
    )
    assert report["overall_accuracy"] == pytest.approx(1.0)


def test_a_geographic_map_is_refused(tmp_path):
    path = tmp_path / "geo.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(10, 50, 0.001, 0.001),
    ) as ds:
        ds.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(EngineError, match="geographic CRS.*Reproject"):
        run_operation("sample-map", {"classes": str(path), "output": str(tmp_path / "s.gpkg")})
