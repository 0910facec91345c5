"""Labels from vector files: coverage rules, points, reprojection, reports and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from engine.errors import EngineError
from engine.probes.labels import check_trainable, drop_empty_classes, rasterize_labels, read_labels

ogr = pytest.importorskip("osgeo.ogr")
osr = pytest.importorskip("osgeo.osr")

UTM = "EPSG:32633"
# A 10 x 10 grid of 10 m cells whose top-left corner is (500000, 5000000).
X0, Y0, RES = 500000.0, 5000000.0, 10.0
TRANSFORM = Affine(RES, 0, X0, 0, -RES, Y0)
SHAPE = (10, 10)


def box(col0: float, row0: float, col1: float, row1: float) -> str:
    """WKT polygon spanning grid columns col0..col1 and rows row0..row1 (fractions allowed)."""
    x0, x1 = X0 + col0 * RES, X0 + col1 * RES
    y0, y1 = Y0 - row1 * RES, Y0 - row0 * RES
    return f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def point(col: float, row: float) -> str:
    return f"POINT ({X0 + col * RES} {Y0 - row * RES})"


def write_layer(path, features, crs=UTM, field_type="int", field="class", driver="GPKG"):
    """features: list of (wkt, value) pairs; value None writes a null."""
    ogr.UseExceptions()
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = None
    if crs is not None:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(crs)
    layer = ds.CreateLayer("labels", srs, ogr.wkbUnknown)
    kind = {"int": ogr.OFTInteger, "text": ogr.OFTString, "real": ogr.OFTReal}[field_type]
    layer.CreateField(ogr.FieldDefn(field, kind))
    for wkt, value in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        if value is not None:
            feature.SetField(field, value)
        layer.CreateFeature(feature)
    ds = None
    return str(path)


def labels_on_grid(path, field="class", min_coverage=0.5, **kwargs):
    layer = read_labels(path, field, target_crs=UTM, **kwargs)
    return rasterize_labels(layer, TRANSFORM, SHAPE, min_coverage=min_coverage, crs=CRS.from_user_input(UTM))


def test_full_cells_of_a_polygon_are_labelled(tmp_path):
    path = write_layer(tmp_path / "a.gpkg", [(box(1, 2, 4, 4), 7), (box(6, 6, 8, 9), 3)])
    samples = labels_on_grid(path)
    image = samples.label_image()
    assert samples.class_names == ("3", "7")
    assert (image[2:4, 1:4] == 1).all() and (image[6:9, 6:8] == 0).all()
    assert (image >= 0).sum() == 6 + 6
    assert samples.class_counts() == {"3": 6, "7": 6}
    # Every cell of one polygon has the same group; the two polygons have different groups.
    groups = {tuple(samples.groups[samples.y == k]) for k in (0, 1)}
    assert all(len(set(g)) == 1 for g in groups)
    assert len({g[0] for g in groups}) == 2


@pytest.mark.parametrize(
    "share, min_coverage, labelled",
    [
        (0.625, 0.5, True),
        (0.625, 0.75, False),
        (0.375, 0.5, False),
        (0.375, 0.25, True),
        (1.0, 1.0, True),
    ],
)
def test_minimum_coverage_rule(tmp_path, share, min_coverage, labelled):
    # One polygon covering `share` of cell (row 5, col 5) and nothing else of any cell.
    path = write_layer(tmp_path / "a.gpkg", [(box(5, 5, 5 + share, 6), 1), (box(0, 0, 1, 1), 2)])
    image = labels_on_grid(path, min_coverage=min_coverage).label_image()
    assert (image[5, 5] >= 0) == labelled
    assert (image[5, 4] == -1) and (image[5, 6] == -1)


def test_coverage_of_one_class_adds_up_across_polygons(tmp_path):
    # Two polygons of the same class, each covering half of cell (3, 3): the cell is fully that class.
    halves = [(box(3, 3, 3.5, 4), 1), (box(3.5, 3, 4, 4), 1), (box(0, 0, 1, 1), 2)]
    image = labels_on_grid(write_layer(tmp_path / "a.gpkg", halves), min_coverage=0.75).label_image()
    assert image[3, 3] == 0


def test_tied_classes_leave_the_cell_unlabelled(tmp_path):
    halves = [(box(3, 3, 3.5, 4), 1), (box(3.5, 3, 4, 4), 2), (box(0, 0, 1, 1), 2)]
    samples = labels_on_grid(write_layer(tmp_path / "a.gpkg", halves), min_coverage=0.5)
    assert samples.label_image()[3, 3] == -1
    assert samples.report["cells_with_tied_classes"] == 1
    assert len(samples) == 1


def test_larger_share_wins_when_coverage_is_low(tmp_path):
    parts = [(box(2, 2, 2.25, 3), 1), (box(2.25, 2, 3, 3), 2)]
    image = labels_on_grid(write_layer(tmp_path / "a.gpkg", parts), min_coverage=0.1).label_image()
    assert image[2, 2] == 1  # class "2" covers 75 %


def test_points_take_their_cell_and_disagreeing_points_are_dropped(tmp_path):
    features = [
        (point(1.5, 1.5), 1),
        (point(4.2, 7.9), 2),
        (point(8.1, 8.1), 1),
        (point(8.9, 8.9), 1),  # same cell, same class: one sample
        (point(5.5, 0.2), 1),
        (point(5.6, 0.7), 2),  # same cell, disagreeing: none
    ]
    samples = labels_on_grid(write_layer(tmp_path / "p.gpkg", features))
    image = samples.label_image()
    assert image[1, 1] == 0 and image[7, 4] == 1 and image[8, 8] == 0 and image[0, 5] == -1
    assert len(samples) == 3 and samples.from_point.all()
    assert samples.report["points_merged_in_one_cell"] == 1
    assert samples.report["cells_with_disagreeing_points"] == 1


def test_labels_in_another_crs_are_reprojected(tmp_path):
    # Points given in longitude/latitude at the centres of chosen cells of the UTM grid.
    cells = [(2, 3, 1), (7, 6, 2), (9, 0, 2)]
    xs = [X0 + (c + 0.5) * RES for r, c, _ in cells]
    ys = [Y0 - (r + 0.5) * RES for r, c, _ in cells]
    lons, lats = warp_transform(UTM, "EPSG:4326", xs, ys)
    features = [(f"POINT ({lon} {lat})", v) for lon, lat, (_, _, v) in zip(lons, lats, cells)]
    samples = labels_on_grid(write_layer(tmp_path / "ll.geojson", features, crs="EPSG:4326", driver="GeoJSON"))
    image = samples.label_image()
    for r, c, value in cells:
        assert image[r, c] == samples.class_names.index(str(value))
    assert len(samples) == 3


def test_text_classes_are_sorted_and_outside_features_reported(tmp_path):
    features = [
        (box(0, 0, 2, 2), "water"),
        (box(4, 4, 6, 6), "forest"),
        (box(20, 20, 22, 22), "urban"),  # far outside the 10 x 10 grid
        (point(-5, 3), "forest"),  # outside too
    ]
    samples = labels_on_grid(write_layer(tmp_path / "t.gpkg", features, field_type="text"))
    assert samples.class_names == ("forest", "urban", "water")
    assert samples.report["features_outside_extent"] == 2
    assert samples.class_counts() == {"forest": 4, "urban": 0, "water": 4}
    compact, dropped = drop_empty_classes(samples)
    assert dropped == ["urban"] and compact.class_names == ("forest", "water")
    assert compact.class_counts() == {"forest": 4, "water": 4}


def test_whole_real_values_are_integer_classes_and_ignored_values_skipped(tmp_path):
    features = [(point(1, 1), 2.0), (point(2, 2), 10.0), (point(3, 3), 0.0)]
    layer = read_labels(write_layer(tmp_path / "r.gpkg", features, field_type="real"), "class", ignore_values=["0"])
    assert layer.class_names == ("2", "10")  # numeric order, not text order
    assert layer.skipped == {"ignored class": 1}


def test_null_classes_are_skipped(tmp_path):
    features = [(point(1, 1), 1), (point(2, 2), None), (point(3, 3), 2)]
    layer = read_labels(write_layer(tmp_path / "n.gpkg", features), "class")
    assert layer.skipped == {"null class": 1} and len(layer.geometries) == 2


def test_real_eolearn_polygons_match_the_reference_rasterization(shared_data):
    """eo-learn ships its own rasterization of the same polygons (LULC.npy); we agree on almost every cell."""
    folder = shared_data / "eolearn_patch" / "TestEOPatch"
    ring = json.loads((folder / "bbox.geojson").read_text())["coordinates"][0]
    transform = Affine(10, 0, min(p[0] for p in ring), 0, -10, max(p[1] for p in ring))
    layer = read_labels(folder / "vector_timeless" / "LULC.gpkg", "LULC_ID", "EPSG:32633", ignore_values=["0"])
    samples = rasterize_labels(layer, transform, (101, 100))
    reference = np.load(folder / "mask_timeless" / "LULC.npy", allow_pickle=False)[..., 0]
    codes = np.array([int(n) for n in samples.class_names])
    agree = codes[samples.y] == reference[samples.rows, samples.cols]
    assert len(samples) > 9000 and agree.mean() > 0.98


# ---------------------------------------------------------------- bad input


def test_empty_layer(tmp_path):
    with pytest.raises(EngineError, match="empty"):
        read_labels(write_layer(tmp_path / "e.gpkg", []), "class")


def test_missing_class_field_lists_the_fields(tmp_path):
    path = write_layer(tmp_path / "m.gpkg", [(point(1, 1), 1)], field="landcover")
    with pytest.raises(EngineError, match="no field 'class'.*landcover"):
        read_labels(path, "class")


def test_all_null_class_field(tmp_path):
    path = write_layer(tmp_path / "n.gpkg", [(point(1, 1), None), (point(2, 2), None)])
    with pytest.raises(EngineError, match="empty class field"):
        read_labels(path, "class")


def test_fractional_class_values_are_refused(tmp_path):
    path = write_layer(tmp_path / "f.gpkg", [(point(1, 1), 1.5)], field_type="real")
    with pytest.raises(EngineError, match="non-whole"):
        read_labels(path, "class")


def test_lines_only(tmp_path):
    path = write_layer(tmp_path / "l.gpkg", [("LINESTRING (500000 4999990, 500050 4999950)", 1)])
    with pytest.raises(EngineError, match="points or polygons"):
        read_labels(path, "class")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        read_labels(tmp_path / "nothing.gpkg", "class")
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a vector")
    with pytest.raises(EngineError, match="junk.gpkg"):
        read_labels(junk, "class")


def test_no_overlap_with_the_raster(tmp_path):
    path = write_layer(tmp_path / "far.gpkg", [(box(50, 50, 52, 52), 1), (box(60, 60, 61, 61), 2)])
    with pytest.raises(EngineError, match="No label .* falls on the raster.*CRS"):
        labels_on_grid(path)


def test_one_class_only(tmp_path):
    samples = labels_on_grid(write_layer(tmp_path / "one.gpkg", [(box(0, 0, 3, 3), 4)]))
    with pytest.raises(EngineError, match="single class"):
        check_trainable(samples)


def test_class_with_a_single_sample(tmp_path):
    samples = labels_on_grid(write_layer(tmp_path / "s.gpkg", [(box(0, 0, 3, 3), 1), (point(8.5, 8.5), 2)]))
    with pytest.raises(EngineError, match=r"Class '2' \(1\) has fewer than 2"):
        check_trainable(samples)


def test_work_arrays_cover_only_the_labels_window(tmp_path):
    # A 200 000 x 200 000-cell grid (2000 km at 10 m): whole-grid arrays would need hundreds of GB.
    path = write_layer(tmp_path / "a.gpkg", [(box(150000, 120000, 150003, 120002), 1), (point(7.5, 9.5), 2)])
    layer = read_labels(path, "class", target_crs=UTM)
    samples = rasterize_labels(layer, TRANSFORM, (200000, 200000))
    assert samples.class_counts() == {"1": 6, "2": 1}
    assert set(zip(samples.rows.tolist(), samples.cols.tolist())) == {
        (r, c) for r in (120000, 120001) for c in (150000, 150001, 150002)
    } | {(9, 7)}
