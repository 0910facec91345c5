"""sample-map's designs, then assess, end to end through the operation registry; and bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.transform import from_origin

from engine.analysis.sample_layer import read_sample
from engine.analysis.sampling import Target, allocate, draw_random, size_for_target
from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.writers import CLASS_NODATA, open_class_map
from engine.runtime.registry import run_operation

NAMES = ["water", "forest", "crop"]
TRANSFORM = from_origin(500000.0, 5000000.0, 20.0, 20.0)


def class_map(path, data=None):
    if data is None:
        data = np.ones((60, 50), np.uint8)  # forest
        data[:, :8] = 0  # water
        data[30:, 20:] = 2  # crop
        data[:3, :3] = CLASS_NODATA
    with open_class_map(
        path,
        Grid(rasterio.crs.CRS.from_epsg(32633), TRANSFORM, data.shape[1], data.shape[0]),
        NAMES,
        ["#0000ff", "#00aa00", "#ffff00"],
    ) as ds:
        ds.write(data, 1)
    return str(path), data


def label(path, truth, field="reference", only=None):
    """Write truth(x, y, map_class) into every point (or the first ``only`` ones), as the panel does."""
    source = ogr.Open(str(path), 1)
    layer = source.GetLayerByName("reference_sample")
    for k, f in enumerate(layer):
        if only is not None and k >= only:
            break
        geom = f.GetGeometryRef()
        f.SetField(field, truth(geom.GetX(), geom.GetY(), f.GetField("map_class")))
        layer.SetFeature(f)
    source = None


def pixel(x, y):
    col, row = ~TRANSFORM * (x, y)
    return int(row), int(col)


def crop_on_the_right(x, y, mapped):
    # The ground truth: the right-most 5 forest columns are crop.
    return "crop" if mapped == "forest" and pixel(x, y)[1] >= 45 else mapped


@pytest.mark.parametrize("design", ["stratified", "simple", "systematic"])
def test_every_design_then_assess(tmp_path, design):
    path, data = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    result = run_operation(
        "sample-map",
        {"classes": path, "output": str(sample), "design": design, "total": 150, "min_per_class": 20, "seed": 3},
    )
    points = read_sample(str(sample))
    assert points.design.design == design and points.design.seed == 3 and len(points.design.map_sha256) == 64
    assert points.design.stratum_pixels == [int((data == k).sum()) for k in range(3)]
    cells = {pixel(x, y) for x, y in zip(points.x, points.y)}
    assert len(cells) == points.sample_id.size == result["samples"]  # without replacement
    for (r, c), code in zip((pixel(x, y) for x, y in zip(points.x, points.y)), points.map_code):
        assert data[r, c] == code  # on the map class it records, never on nodata
    if design == "systematic":
        rows = sorted({r for r, _ in cells})
        assert len(set(np.diff(rows))) <= 2  # a regular grid (steps differ by the flooring only)
        assert abs(result["samples"] - 150) < 20
    else:
        assert result["samples"] == 150
    label(sample, crop_on_the_right)
    out, html = tmp_path / "areas.csv", tmp_path / "areas.html"
    report = run_operation("assess", {"classes": path, "sample": str(sample), "output": str(out), "html": str(html)})
    assert report["design"] == design and report["response"]["labelled"] == report["response"]["total"]
    classes = {r["class"]: r for r in report["classes"]}
    true_crop = ((data == 2) | ((data == 1) & (np.arange(50) >= 45))).sum() * 400.0
    crop = classes["crop"]
    assert crop["area_ci95_low"] <= true_crop <= crop["area_ci95_high"]
    assert classes["water"]["users_accuracy"] == 1.0
    text = html.read_text()
    for part in (
        "Sampling design",
        "labelling state",
        "Error matrix: labelled points",
        "estimated proportions of the map",
        "95% interval",
        "CV",
        design,
    ):
        assert part in text
    if design != "stratified":
        assert "Post-stratified" in text
    rows = list(csv.DictReader(out.open()))
    assert rows[2]["class"] == "crop" and float(rows[2]["estimated_area (m2)"]) == pytest.approx(crop["estimated_area"])


def test_labelling_in_progress_counts_flags_and_leaves_unlabelled_out(tmp_path):
    path, _ = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    run_operation("sample-map", {"classes": path, "output": str(sample), "total": 60, "min_per_class": 20})
    label(sample, lambda x, y, m: m, only=45)
    source = ogr.Open(str(sample), 1)
    layer = source.GetLayerByName("reference_sample")
    f = layer.GetFeature(50)
    f.SetField("flag", "no data")
    layer.SetFeature(f)
    source = None
    report = run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})
    assert report["response"] == {"total": 60, "labelled": 45, "not sure": 0, "no data": 1, "not labelled": 14}
    assert sum(v["labelled"] for v in report["points_per_stratum"].values()) == 45


def test_target_size_and_neyman_allocation(tmp_path):
    path, data = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    users = [0.95, 0.9, 0.7]
    result = run_operation(
        "sample-map",
        {
            "classes": path,
            "output": str(sample),
            "target_se": 0.03,
            "expected_users_accuracy": users,
            "allocation": "neyman",
            "min_per_class": 5,
        },
    )
    counts = [int((data == k).sum()) for k in range(3)]
    n = size_for_target(counts, Target(0.03, tuple(users)), "stratified", "neyman")
    assert result["target_size"] == n
    per = result["samples_per_class"]
    # Neyman: n_h ~ N_h S_h; crop (S = 0.46) gets more per pixel than water (S = 0.22).
    assert per["crop"] / counts[2] > per["water"] / counts[0]
    assert sum(per.values()) >= n
    assert read_sample(str(sample)).design.target["size"] == n


@pytest.mark.parametrize("design", ["stratified", "simple"])
def test_min_distance_is_kept_and_the_seed_repeats(tmp_path, design):
    path, _ = class_map(tmp_path / "classes.tif")
    a, b = tmp_path / "a.gpkg", tmp_path / "b.gpkg"
    for out in (a, b):
        run_operation(
            "sample-map",
            {
                "classes": path,
                "output": str(out),
                "total": 40,
                "min_per_class": 10,
                "min_distance": 100.0,
                "seed": 7,
                "design": design,
            },
        )
    pa, pb = read_sample(str(a)), read_sample(str(b))
    np.testing.assert_array_equal(pa.x, pb.x)
    xy = np.stack([pa.x, pa.y], 1)
    distance = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    assert distance[~np.eye(len(xy), dtype=bool)].min() >= 100.0
    with pytest.raises(EngineError, match="minimum distance of 600 .* lower the distance"):
        run_operation(
            "sample-map",
            {
                "classes": path,
                "output": str(tmp_path / "c.gpkg"),
                "total": 40,
                "min_per_class": 10,
                "min_distance": 600.0,
            },
        )


def test_allocations():
    assert allocate([9000, 900, 100, 0], 300, "proportional", 50).tolist() == [200, 50, 50, 0]
    assert allocate([9000, 900, 100], 300, "equal").tolist() == [100, 100, 100]
    assert allocate([9000, 900, 60], 300, "equal").tolist() == [120, 120, 60]  # never more than a class has
    with pytest.raises(EngineError, match="raise the total"):
        allocate([100, 100, 100], 100, "proportional", 50)


def test_draw_is_uniform_within_a_stratum():
    codes = np.zeros((20, 20), np.int64)
    codes[:, 10:] = 1
    hits = np.zeros((20, 20))
    for seed in range(300):
        rows, cols, got = draw_random(lambda: iter([(0, 0, codes)]), [200, 200], [5, 20], seed)
        assert np.bincount(got).tolist() == [5, 20]
        hits[rows, cols] += 1
    # Every pixel of class 0 expects 300 * 5 / 200 = 7.5 hits: none is left out or favoured much.
    assert hits[:, :10].min() > 0 and hits[:, :10].max() < 20


# ---------------------------------------------------------------- bad input


def drawn(tmp_path, **options):
    path, data = class_map(tmp_path / "classes.tif")
    sample = tmp_path / "sample.gpkg"
    run_operation("sample-map", {"classes": path, "output": str(sample), "total": 60, "min_per_class": 15, **options})
    return path, data, sample


def test_a_sample_from_another_map_is_refused(tmp_path):
    path, data, sample = drawn(tmp_path)
    label(sample, lambda x, y, m: m)
    other = data.copy()
    other[40, 40] = 0
    other_path, _ = class_map(tmp_path / "other.tif", other)
    with pytest.raises(EngineError, match=r"drawn from another map \(classes.tif.*other.tif.*draw a\s+new sample"):
        run_operation("assess", {"classes": other_path, "sample": str(sample), "output": str(tmp_path / "a.csv")})


def test_labels_that_are_not_map_classes_are_named(tmp_path):
    path, _, sample = drawn(tmp_path)
    label(sample, lambda x, y, m: "meadow" if m == "crop" else m)
    with pytest.raises(
        EngineError, match="'meadow' in field 'reference' .* not classes of the map .*water, forest, crop"
    ):
        run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})


def test_a_stratum_with_one_labelled_point_reports_undefined_not_zero(tmp_path):
    path, _, sample = drawn(tmp_path)
    seen = {"water": 0}

    def one_water(x, y, mapped):
        if mapped == "water":
            seen["water"] += 1
            return "water" if seen["water"] == 1 else None
        return mapped

    label(sample, one_water)
    out, html = tmp_path / "a.csv", tmp_path / "a.html"
    report = run_operation("assess", {"classes": path, "sample": str(sample), "output": str(out), "html": str(html)})
    water = report["classes"][0]
    assert water["area_se"] is None and report["overall_accuracy_se"] is None
    assert any("map class 'water' has 1 labelled point" in n for n in report["notes"])
    assert "undefined" in html.read_text() and "± 0.0 " not in html.read_text()
    assert next(csv.DictReader(out.open()))["area_se (m2)"] == "undefined"


def test_a_stratum_with_no_labelled_point_is_named_with_the_file(tmp_path):
    path, _, sample = drawn(tmp_path)
    label(sample, lambda x, y, m: None if m == "crop" else m)
    with pytest.raises(
        EngineError,
        match=r"No labelled point of '.*sample.gpkg' lies in the mapped class\(es\) crop \(\d+ point\(s\), none "
        r"labelled\).*Label points there",
    ):
        run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})
    assert not (tmp_path / "a.csv").exists()


def move_point(sample, x, y):
    source = ogr.Open(str(sample), 1)
    layer = source.GetLayerByName("reference_sample")
    f = layer.GetFeature(1)
    point = ogr.Geometry(ogr.wkbPoint)
    point.AddPoint_2D(x, y)
    f.SetGeometry(point)
    layer.SetFeature(f)
    source = None


def test_points_outside_the_map_or_on_nodata_are_named(tmp_path):
    path, _, sample = drawn(tmp_path)
    label(sample, lambda x, y, m: m)
    move_point(sample, 400000.0, 5000000.0)
    with pytest.raises(EngineError, match=r"point\(s\) 1 of .* outside the map"):
        run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})
    move_point(sample, 500000.0 + 30.0, 5000000.0 - 30.0)  # pixel (1, 1): nodata
    with pytest.raises(EngineError, match=r"point\(s\) 1 of .* on nodata"):
        run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})


def test_a_systematic_grid_coarser_than_the_smallest_class_is_refused(tmp_path):
    data = np.ones((60, 50), np.uint8)
    data[:4, :4] = 2  # 16 pixels of crop
    path, _ = class_map(tmp_path / "classes.tif", data)
    with pytest.raises(
        EngineError,
        match=r"systematic .* fewer than 2 points .*crop \(0\.\d\)"
        r".*at most 56\.\d+ map units",
    ):
        run_operation(
            "sample-map",
            {"classes": path, "output": str(tmp_path / "s.gpkg"), "design": "systematic", "grid_step": 200.0},
        )


def test_a_target_needing_more_points_than_pixels_is_refused(tmp_path):
    path, _ = class_map(tmp_path / "classes.tif")
    with pytest.raises(
        EngineError,
        match=r"points are needed for the target .* only 2991 classified pixels.*larger "
        "target_se",
    ):
        run_operation(
            "sample-map",
            {
                "classes": path,
                "output": str(tmp_path / "s.gpkg"),
                "target_se": 0.001,
                "expected_users_accuracy": [0.5, 0.5, 0.5],
            },
        )


def test_a_layer_without_design_is_sent_to_area_report(tmp_path):
    path, _, sample = drawn(tmp_path)
    source = ogr.Open(str(sample), 1)
    source.DeleteLayer("sample_design")
    source = None
    with pytest.raises(EngineError, match="records no sampling design .*area-report"):
        run_operation("assess", {"classes": path, "sample": str(sample), "output": str(tmp_path / "a.csv")})


def test_dry_run_gives_the_sizes_and_writes_nothing(tmp_path):
    path, data = class_map(tmp_path / "classes.tif")
    out = tmp_path / "s.gpkg"
    preview = run_operation(
        "sample-map", {"classes": path, "output": str(out), "total": 90, "min_per_class": 20, "dry_run": True}
    )
    assert not out.exists() and preview["dry_run"]
    drawn_for_real = run_operation(
        "sample-map", {"classes": path, "output": str(out), "total": 90, "min_per_class": 20}
    )
    assert preview["planned_per_class"] == {k: float(v) for k, v in drawn_for_real["samples_per_class"].items()}


def test_a_total_beyond_the_map_takes_every_pixel(tmp_path):
    data = np.full((4, 5), 1, np.uint8)
    data[:, :2] = 0
    path, _ = class_map(tmp_path / "classes.tif", data)
    result = run_operation(
        "sample-map", {"classes": path, "output": str(tmp_path / "s.gpkg"), "total": 500, "min_per_class": 50}
    )
    assert result["samples_per_class"] == {"water": 8, "forest": 12}
