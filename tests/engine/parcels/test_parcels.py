"""classify-parcels: per-parcel class, probability, runner-up and valid share; parcels in another CRS,
outside the area, empty, invalid, overlapping, without a valid pixel; the input never modified; the
style stored in the GeoPackage."""

import hashlib
import json

import numpy as np
import pytest
import rasterio
from osgeo import ogr, osr
from rasterio.transform import from_origin

from engine.errors import EngineError
from engine.runtime.registry import run_operation

ORIGIN = (500000.0, 5100000.0)  # UTM 33N, 10 m pixels, 20 x 20
NAMES = ["wheat", "maize", "grass"]


def probabilities_raster(path):
    """Left half: maize 0.7 / wheat 0.2 / grass 0.1; right half: grass 0.6 / maize 0.3 / wheat 0.1;
    the rows 15-19 have no value (NaN: clouds every date)."""
    data = np.zeros((3, 20, 20), np.float32)
    data[:, :, :10] = np.array([0.2, 0.7, 0.1])[:, None, None]
    data[:, :, 10:] = np.array([0.1, 0.3, 0.6])[:, None, None]
    data[:, 15:, :] = np.nan
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=20,
        height=20,
        count=3,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(*ORIGIN, 10, 10),
        nodata=float("nan"),
    ) as ds:
        ds.write(data)
        for k, name in enumerate(NAMES, 1):
            ds.set_band_description(k, name)
    return path


def box(x0, y0, x1, y1):
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def write_parcels(path, rows, epsg=32633):
    ogr.UseExceptions()
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    layer = source.CreateLayer("lpis", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for name, wkt in rows:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        if wkt:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    source = None
    return path


def read_rows(path, layer="parcels_classified"):
    source = ogr.Open(str(path))
    rows = {
        f.GetField("name"): {
            k: f.GetField(k)
            for k in ("class", "probability", "runner_up", "runner_up_probability", "valid_share", "pixels", "status")
        }
        for f in source.GetLayerByName(layer)
    }
    styles = [
        (f.GetField("f_table_name"), f.GetField("styleQML"), f.GetField("useAsDefault"))
        for f in source.GetLayerByName("layer_styles")
    ]
    return rows, styles


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


X0, Y1 = ORIGIN


def test_mean_probability_per_parcel_with_every_kind_of_parcel(tmp_path):
    probabilities = probabilities_raster(tmp_path / "probabilities.tif")
    parcels = write_parcels(
        tmp_path / "lpis.gpkg",
        [
            ("left", box(X0, Y1 - 100, X0 + 100, Y1)),  # 10 x 10 px of maize
            ("right", box(X0 + 100, Y1 - 100, X0 + 200, Y1)),  # grass
            ("straddling", box(X0 + 60, Y1 - 120, X0 + 120, Y1 - 100)),  # per row 4 px maize side, 2 px grass side
            ("cloudy", box(X0, Y1 - 200, X0 + 100, Y1 - 160)),  # rows 16-19: no value
            ("half cloudy", box(X0 + 100, Y1 - 180, X0 + 200, Y1 - 120)),  # rows 12-17: half valid
            ("outside", box(X0 + 5000, Y1 + 5000, X0 + 5100, Y1 + 5100)),
            ("empty", None),
            (
                "bowtie",
                f"POLYGON(({X0} {Y1 - 120},{X0 + 40} {Y1 - 150},{X0 + 40} {Y1 - 120},{X0} {Y1 - 150},{X0} {Y1 - 120}))",
            ),  # self-intersecting: repaired
            ("overlap a", box(X0 + 20, Y1 - 60, X0 + 60, Y1 - 20)),  # overlaps "left" entirely
        ],
    )
    before = digest(parcels)
    result = run_operation(
        "classify-parcels",
        {"parcels": str(parcels), "output": str(tmp_path / "map.gpkg"), "probabilities": str(probabilities)},
    )
    assert digest(parcels) == before  # the input is never modified
    rows, styles = read_rows(tmp_path / "map.gpkg")
    assert set(rows) == {
        "left",
        "right",
        "straddling",
        "cloudy",
        "half cloudy",
        "outside",
        "empty",
        "bowtie",
        "overlap a",
    }
    left = rows["left"]
    assert (left["class"], left["runner_up"]) == ("maize", "wheat")
    assert left["probability"] == pytest.approx(0.7) and left["runner_up_probability"] == pytest.approx(0.2)
    assert left["pixels"] == 100 and left["valid_share"] == pytest.approx(84 / 100)  # 16 px shared with "overlap a"
    assert "16 pixel(s) shared" in left["status"]
    assert rows["right"]["class"] == "grass" and rows["right"]["probability"] == pytest.approx(0.6)
    # the mean over 4 maize-side and 2 grass-side pixels
    assert rows["straddling"]["probability"] == pytest.approx((4 * 0.7 + 2 * 0.3) / 6)
    cloudy = rows["cloudy"]
    assert cloudy["class"] is None and cloudy["probability"] is None and cloudy["valid_share"] == 0
    assert cloudy["status"] == "no valid pixel (clouds or no data)" and cloudy["pixels"] == 40
    assert rows["half cloudy"]["class"] == "grass" and rows["half cloudy"]["valid_share"] == pytest.approx(0.5)
    assert rows["outside"]["class"] is None and rows["outside"]["status"].startswith("no pixel centre inside")
    assert rows["empty"]["status"] == "empty geometry" and rows["empty"]["class"] is None
    assert rows["bowtie"]["class"] == "maize"
    assert rows["overlap a"]["class"] is None and "every pixel shared" in rows["overlap a"]["status"]
    assert result["classified"] == 5 and result["parcels"] == 9
    # the categorised style: the layer's default, one category per class and one for parcels without class
    ((table, qml, default),) = styles
    assert table == "parcels_classified" and default == 1
    assert 'type="categorizedSymbol" attr="class"' in qml and all(f'value="{n}"' in qml for n in NAMES)
    assert (tmp_path / "map.qml").read_text() == qml


def test_parcels_in_another_crs_land_on_the_same_pixels(tmp_path):
    probabilities = probabilities_raster(tmp_path / "probabilities.tif")
    utm = write_parcels(tmp_path / "utm.gpkg", [("right", box(X0 + 100, Y1 - 100, X0 + 200, Y1))])
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32633)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(src, dst)
    geometry = ogr.CreateGeometryFromWkt(box(X0 + 100, Y1 - 100, X0 + 200, Y1))
    geometry.Segmentize(5)  # the reprojected edges stay on the pixel edges' lines
    geometry.Transform(to_wgs84)
    wgs84 = write_parcels(tmp_path / "wgs84.gpkg", [("right", geometry.ExportToWkt())], epsg=4326)
    for name, path in (("utm", utm), ("wgs84", wgs84)):
        run_operation(
            "classify-parcels",
            {"parcels": str(path), "output": str(tmp_path / f"{name}_map.gpkg"), "probabilities": str(probabilities)},
        )
    utm_rows, _ = read_rows(tmp_path / "utm_map.gpkg")
    wgs_rows, _ = read_rows(tmp_path / "wgs84_map.gpkg")
    assert wgs_rows["right"] == utm_rows["right"] and utm_rows["right"]["pixels"] == 100
    # the written geometry stays in the input's CRS
    source = ogr.Open(str(tmp_path / "wgs84_map.gpkg"))  # kept: a layer dies with its source
    assert source.GetLayerByName("parcels_classified").GetSpatialRef().GetAuthorityCode(None) == "4326"


def test_bad_parcel_layers_get_clear_messages(tmp_path):
    probabilities = probabilities_raster(tmp_path / "probabilities.tif")
    far = write_parcels(tmp_path / "far.gpkg", [("a", box(X0 + 9000, Y1, X0 + 9100, Y1 + 100))])
    with pytest.raises(EngineError, match="lie outside the map's area"):
        run_operation(
            "classify-parcels",
            {"parcels": str(far), "output": str(tmp_path / "o.gpkg"), "probabilities": str(probabilities)},
        )
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "none.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    source.CreateLayer("lpis", srs, ogr.wkbPolygon)
    source = None
    with pytest.raises(EngineError, match="has no feature"):
        run_operation(
            "classify-parcels",
            {
                "parcels": str(tmp_path / "none.gpkg"),
                "output": str(tmp_path / "o.gpkg"),
                "probabilities": str(probabilities),
            },
        )
    ok = write_parcels(tmp_path / "ok.gpkg", [("a", box(X0, Y1 - 100, X0 + 100, Y1))])
    with pytest.raises(EngineError, match="either 'probabilities'.*or 'job'"):
        run_operation("classify-parcels", {"parcels": str(ok), "output": str(tmp_path / "o.gpkg")})
    with pytest.raises(EngineError, match=r"must be a GeoPackage \(\.gpkg\)"):
        run_operation(
            "classify-parcels",
            {"parcels": str(ok), "output": str(tmp_path / "o.shp"), "probabilities": str(probabilities)},
        )
    with pytest.raises(EngineError, match="one band per class"):
        confidence = tmp_path / "confidence.tif"
        with rasterio.open(
            confidence,
            "w",
            driver="GTiff",
            width=4,
            height=4,
            count=1,
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(*ORIGIN, 10, 10),
        ) as ds:
            ds.write(np.ones((1, 4, 4), np.float32))
        run_operation(
            "classify-parcels",
            {"parcels": str(ok), "output": str(tmp_path / "o.gpkg"), "probabilities": str(confidence)},
        )
    assert not (tmp_path / "o.gpkg").exists()
    json.dumps(
        run_operation(
            "classify-parcels",
            {"parcels": str(ok), "output": str(tmp_path / "o.gpkg"), "probabilities": str(probabilities)},
        )
    )


@pytest.mark.slow
def test_parcel_features_way_on_the_flanders_sample(shared_data, tmp_path):
    """Per-parcel monthly + temporal statistics of S2 (10 m + 20 m + SCL) and S1 (dB), a forest fitted on
    the labelled parcels; the parcels without a code are classified too, scored on held-out parcels."""
    from engine.bench.flanders import build

    files = build(tmp_path / "fl", slice(60, 72), slice(96, 110))
    # hide the code of two parcels: they are to be classified
    labelled = tmp_path / "labelled.gpkg"
    source = ogr.GetDriverByName("GPKG").CopyDataSource(ogr.Open(str(files.parcels)), str(labelled))
    layer = source.GetLayer(0)
    for fid in (1, 2):
        feature = layer.GetFeature(fid)
        feature.SetFieldNull("crop_code")
        layer.SetFeature(feature)
    source = None
    job = {
        "model": "anysat-tiny",
        "outputs": {"embeddings": str(tmp_path / "unused.tif")},
        "modalities": {
            "s2": {
                "parts": [
                    {"files": str(files.s2_10m[0].parent), "bands": ["B2", "B3", "B4", "B8"]},
                    {"files": str(files.s2_20m[0].parent), "bands": ["B5", "B6", "B7", "B8A", "B11", "B12"]},
                ],
                "mask": {"files": str(files.scl[0].parent), "type": "scl"},
            },
            "s1_asc": {"files": str(files.s1[0].parent), "scale": "db_to_linear"},
        },
    }
    result = run_operation(
        "classify-parcels",
        {"parcels": str(labelled), "output": str(tmp_path / "map.gpkg"), "job": job, "class_field": "crop_code"},
    )
    assert result["classified"] == 19 and result["held_out"]["parcels"] >= 10
    assert 0 <= result["held_out"]["macro_f1"] <= 1
    source = ogr.Open(str(tmp_path / "map.gpkg"))
    rows = [
        (f.GetField("crop_code"), f.GetField("class"), f.GetField("probability"))
        for f in source.GetLayerByName("parcels_classified")
    ]
    assert len(rows) == 19 and all(c is not None and 0 < p <= 1 for _, c, p in rows)
    assert [r[0] for r in rows[:2]] == [None, None]
    # auto: both ways scored on the same whole-parcel folds, the better one applied, both scores reported.
    auto = run_operation(
        "classify-parcels",
        {
            "parcels": str(labelled),
            "output": str(tmp_path / "auto.gpkg"),
            "job": job,
            "class_field": "crop_code",
            "way": "auto",
        },
    )
    scores = auto["ways"]
    assert scores["features"] == result["held_out"]  # the features way's own score: the same folds
    assert scores["pixels"]["parcels"] == scores["features"]["parcels"] and 0 <= scores["pixels"]["macro_f1"] <= 1
    best = max(("features", "pixels"), key=lambda w: (scores[w]["macro_f1"], w == "features"))
    assert auto["way"] == best and auto["held_out"] == scores[best] and auto["classified"] == 19
    with pytest.raises(EngineError, match="Unknown way 'both'"):
        run_operation(
            "classify-parcels",
            {
                "parcels": str(labelled),
                "output": str(tmp_path / "x.gpkg"),
                "job": job,
                "class_field": "crop_code",
                "way": "both",
            },
        )
