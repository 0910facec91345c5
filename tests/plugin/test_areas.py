"""The area algorithms inside QGIS: draw a sample from a class map, label it, estimate the areas."""

from __future__ import annotations

import csv

import numpy as np
import rasterio
from osgeo import ogr
from rasterio.transform import from_origin

from engine.io.grid import Grid
from engine.io.writers import open_class_map
from tests.plugin.test_processing import provider, run_algorithm  # noqa: F401  (the fixture)


def test_sample_then_area_report(provider, tmp_path):  # noqa: F811
    classes = tmp_path / "classes.tif"
    data = np.zeros((30, 30), np.uint8)
    data[:, 20:] = 1
    grid = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 10.0, 10.0), 30, 30)
    with open_class_map(classes, grid, ["grass", "water"], ["#00ff00", "#0000ff"]) as ds:
        ds.write(data, 1)
    sample = tmp_path / "sample.gpkg"
    results = run_algorithm(
        "samplemap", {"CLASSES": str(classes), "TOTAL": 40, "MIN_PER_CLASS": 10, "OUTPUT": str(sample)}
    )
    assert results["SAMPLES"] == 40
    source = ogr.Open(str(sample), 1)
    layer = source.GetLayer(0)
    for feature in layer:
        feature.SetField("reference", feature.GetField("map_class"))
        layer.SetFeature(feature)
    source = None
    table = tmp_path / "areas.csv"
    results = run_algorithm(
        "areareport",
        {"CLASSES": str(classes), "REFERENCE": str(sample), "OUTPUT": str(table), "HTML": str(tmp_path / "areas.html")},
    )
    assert results["OVERALL_ACCURACY"] == 1.0
    rows = {r["class"]: r for r in csv.DictReader(table.open())}
    assert float(rows["water"]["estimated_area (m2)"]) == 10 * 30 * 100.0  # a perfect map: its own area
    assert "95% interval" in (tmp_path / "areas.html").read_text()


def test_stratified_sample_from_a_target_then_assess(provider, tmp_path):  # noqa: F811
    classes = tmp_path / "classes.tif"
    data = np.zeros((40, 40), np.uint8)
    data[:, 30:] = 1
    grid = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 10.0, 10.0), 40, 40)
    with open_class_map(classes, grid, ["grass", "water"], ["#00ff00", "#0000ff"]) as ds:
        ds.write(data, 1)
    sample = tmp_path / "sample.gpkg"
    results = run_algorithm(
        "samplemap",
        {
            "CLASSES": str(classes),
            "DESIGN": "stratified",
            "ALLOCATION": "neyman",
            "TARGET_SE": 0.05,
            "EXPECTED_USERS_ACCURACY": "0.8, 0.9",
            "MIN_PER_CLASS": 5,
            "SEED": 2,
            "OUTPUT": str(sample),
        },
    )
    assert results["TARGET_SIZE"] > 0 and results["SAMPLES"] >= results["TARGET_SIZE"]
    source = ogr.Open(str(sample), 1)
    layer = source.GetLayerByName("reference_sample")
    labelled = 0
    for k, feature in enumerate(layer):
        if k % 4:  # three in four labelled, all right
            feature.SetField("reference", feature.GetField("map_class"))
            layer.SetFeature(feature)
            labelled += 1
    source = None
    html = tmp_path / "assessment.html"
    results = run_algorithm(
        "assess",
        {"CLASSES": str(classes), "SAMPLE": str(sample), "OUTPUT": str(tmp_path / "assessment.csv"), "HTML": str(html)},
    )
    assert results["OVERALL_ACCURACY"] == 1.0
    assert results["LABELLED"] == labelled
    assert "Response design: labelling state" in html.read_text()
