"""The 'Classify parcels' Processing algorithm: a parcel layer and a map's probabilities in, a styled
GeoPackage layer out, the same rows as the engine's operation."""

from __future__ import annotations

import pytest
from osgeo import ogr
from qgis.core import QgsProcessingFeedback

from tests.engine.parcels.test_parcels import X0, Y1, box, probabilities_raster, read_rows, write_parcels
from tests.plugin.test_processing import provider, run_algorithm  # noqa: F401  (the fixture)


def test_classify_parcels_from_probabilities(provider, tmp_path):  # noqa: F811
    from engine.runtime.registry import run_operation

    probabilities = probabilities_raster(tmp_path / "probabilities.tif")
    parcels = write_parcels(
        tmp_path / "lpis.gpkg",
        [
            ("left", box(X0, Y1 - 100, X0 + 100, Y1)),
            ("right", box(X0 + 100, Y1 - 100, X0 + 200, Y1)),
            ("cloudy", box(X0, Y1 - 200, X0 + 100, Y1 - 160)),
        ],
    )
    out = tmp_path / "parcel_map.gpkg"
    results = run_algorithm(
        "classifyparcels",
        {"PARCELS": f"{parcels}|layername=lpis", "PROBABILITIES": str(probabilities), "OUTPUT": str(out)},
    )
    assert results["CLASSIFIED"] == 2 and results["PARCEL_COUNT"] == 3
    rows, styles = read_rows(out)
    engine_out = tmp_path / "engine.gpkg"
    run_operation(
        "classify-parcels", {"parcels": str(parcels), "probabilities": str(probabilities), "output": str(engine_out)}
    )
    assert rows == read_rows(engine_out)[0]  # Processing and the engine: the same rows
    assert rows["left"]["class"] == "maize" and rows["cloudy"]["class"] is None
    assert styles and styles[0][2] == 1
    # QGIS takes the stored style as the layer's default: categorised by class in the class colours
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{out}|layername=parcels_classified", "parcels", "ogr")
    assert layer.isValid() and layer.loadDefaultStyle()[1]
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class"
    assert [c.value() for c in renderer.categories()] == ["wheat", "maize", "grass", ""]


class Errors(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors: list[str] = []
        self.lines: list[str] = []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.lines.append(info)
        super().pushInfo(info)

    def reportError(self, error, fatalError=False):  # noqa: N802 - QGIS API
        self.errors.append(error)
        super().reportError(error, fatalError)


def test_classify_parcels_needs_one_way(provider, tmp_path):  # noqa: F811
    parcels = write_parcels(tmp_path / "lpis.gpkg", [("left", box(X0, Y1 - 100, X0 + 100, Y1))])
    feedback = Errors()
    with pytest.raises(AssertionError, match="reported failure"):
        run_algorithm("classifyparcels", {"PARCELS": str(parcels), "OUTPUT": str(tmp_path / "o.gpkg")}, feedback)
    assert any("Give exactly one of PROBABILITIES (a map" in e for e in feedback.errors)
    assert ogr.Open(str(parcels)).GetLayer(0).GetFeatureCount() == 1


def test_mapping_algorithms_pass_cloud_masks_and_the_season(provider, shared_data, tmp_path):  # noqa: F811
    """SEASON and the per-sensor masks reach the engine's job: an embedding run on the Flanders sample
    (10 m + 20 m bands in a job file) keeps only the season's dates."""
    import json

    from engine.bench.flanders import build
    from omnisat_qgis.algorithms.mapping import add_modalities

    assert add_modalities({}, {1: {"name": "s2", "files": ["a.tif"], "masks": ["scl.tif"], "mask_type": "scl"}}) == {
        "modalities": {"s2": {"files": ["a.tif"], "mask": {"files": ["scl.tif"], "type": "scl"}}}
    }
    files = build(tmp_path / "fl", slice(60, 66), slice(96, 106))
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "model": "anysat-tiny",
                "outputs": {},
                "modalities": {
                    "s2": {
                        "parts": [
                            {"files": str(files.s2_10m[0].parent), "bands": ["B2", "B3", "B4", "B8"]},
                            {"files": str(files.s2_20m[0].parent), "bands": ["B5", "B6", "B7", "B8A", "B11", "B12"]},
                        ],
                        "mask": {"files": str(files.scl[0].parent), "type": "scl"},
                    }
                },
            }
        )
    )
    first, last = files.s2_dates[1].isoformat(), files.s2_dates[3].isoformat()
    feedback = Errors()
    results = run_algorithm(
        "embed",
        {"JOB": str(job), "SEASON": f"{first},{last}", "DEVICE": "cpu", "EMBEDDINGS": str(tmp_path / "embeddings.tif")},
        feedback,
    )
    assert any(f"s2: 3 date(s) in the season {first}..{last}" in line for line in feedback.lines)
    assert results["EMBEDDINGS"] == str(tmp_path / "embeddings.tif")


def test_classify_parcels_features_way_with_a_job_and_the_season(provider, shared_data, tmp_path):  # noqa: F811
    """The features way given as in Classify (a job file with the 10 m + 20 m parts and the SCL masks, the
    SEASON parameter over it), auto choosing between per-parcel features and averaged pixel predictions,
    both scores in the log."""
    import json

    from engine.bench.crops import crops_job
    from engine.bench.flanders import build

    files = build(tmp_path / "fl", slice(60, 72), slice(0, 1))
    spec = crops_job(files)  # the bench's job: S2 parts and SCL masks (S1 left out here)
    del spec["modalities"]["s1_asc"], spec["outputs"]
    job = tmp_path / "job.json"
    job.write_text(json.dumps(spec))
    first, last = files.s2_dates[2].isoformat(), files.s2_dates[9].isoformat()
    feedback = Errors()
    results = run_algorithm(
        "classifyparcels",
        {
            "PARCELS": f"{files.parcels}|layername=parcels",
            "JOB": str(job),
            "SEASON": f"{first},{last}",
            "CLASS_FIELD": "crop_code",
            "WAY": "auto",
            "OUTPUT": str(tmp_path / "parcels.gpkg"),
        },
        feedback,
    )
    log = "\n".join(feedback.lines)
    assert f"s2: 8 date(s) in the season {first}..{last}" in log
    assert "a classifier on per-parcel features: held-out whole parcels" in log
    assert "pixel predictions averaged per parcel: held-out whole parcels" in log and "auto chose" in log
    assert results["PARCEL_COUNT"] == 19 and results["CLASSIFIED"] == 19
