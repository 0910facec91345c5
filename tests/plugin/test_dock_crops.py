"""The dock on a crop analyst's inputs (the Flanders sample as GeoTIFFs per date): Sentinel-2's 10 m and
20 m files ticked in one row go to the job as parts, the SCL layers as the cloud mask with the classes
chosen, the season on every time series; what cannot be read together is refused with the layers named;
Classify parcels asks for a map and for a parcels layer in a file."""

from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

from engine.bench.flanders import build
from omnisat_qgis.paths import resources_dir
from tests.plugin.test_dock import dock, scene, wait  # noqa: F401 - fixtures

DATES = slice(40, 43)  # three Sentinel-2 dates of April-May 2018


@pytest.fixture(scope="module")
def flanders(tmp_path_factory):
    return build(tmp_path_factory.mktemp("flanders"), s2_dates=DATES, s1_dates=slice(0, 2))


def add(paths, name=lambda p: p.stem):
    layers = [QgsRasterLayer(str(p), name(p), "gdal") for p in paths]
    QgsProject.instance().addMapLayers(layers)
    return layers


def s2_row(widget):
    return widget.rows[[r.modality.name for r in widget.rows].index("s2")]


def test_10m_and_20m_layers_go_as_parts_with_the_scl_mask_and_the_season(dock, flanders):  # noqa: F811
    ten, twenty = add(flanders.s2_10m), add(flanders.s2_20m)
    scl = add(flanders.scl)
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in ten + twenty]}})
    panel = dock.crops_panel
    assert [lyr.name() for lyr in panel.mask_layers()] == [lyr.name() for lyr in scl]  # SCL ticked on arrival
    assert panel.mask_modality.currentData() == "s2"
    panel.set_masked_classes([3, 8, 9, 10])  # the analyst leaves snow and no data unmasked
    panel.set_season("2018-04-01", "2018-06-30")
    (entry,) = dock.inputs()
    days = [d.isoformat() for d in flanders.s2_dates]
    job = entry.job_entry()
    assert job["parts"] == [
        {"files": [str(p) for p in flanders.s2_10m], "bands": ["B2", "B3", "B4", "B8"], "dates": days},
        {"files": [str(p) for p in flanders.s2_20m], "bands": ["B5", "B6", "B7", "B8A", "B11", "B12"], "dates": days},
    ]
    assert "files" not in job
    assert job["mask"] == {"files": [str(p) for p in flanders.scl], "type": "scl", "classes": [3, 8, 9, 10]}
    assert job["season"] == ["2018-04-01", "2018-06-30"]
    # The engine reads what the dock wrote: every band, the SCL masks, the dates in the season.
    from engine.io.job import parse_job
    from engine.mapping.plan import resolve_inputs
    from engine.models.checkpoint import load_checkpoint

    model = load_checkpoint(resources_dir() / "models" / "anysat-tiny.safetensors").model
    parsed = parse_job({"model": "anysat-tiny", "modalities": {"s2": job}, "outputs": {"embeddings": "e.tif"}})
    modality = resolve_inputs(parsed, model)["s2"]
    in_season = [d for d in days if "2018-04-01" <= d <= "2018-06-30"]
    assert [layer.date.isoformat() for layer in modality.layers] == in_season and in_season
    assert not modality.missing_bands and modality.mask_type == "scl" and modality.mask_classes == (3, 8, 9, 10)
    assert len(modality.masks) == len(in_season)
    panel.set_masked_classes([])
    with pytest.raises(Exception, match="No scene class is ticked as masked"):
        dock.inputs()


def test_a_date_only_one_group_of_bands_has_is_refused_with_the_date(dock, flanders):  # noqa: F811
    ten, twenty = add(flanders.s2_10m), add(flanders.s2_20m)
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in ten + twenty[:-1]]}})
    missing = flanders.s2_dates[-1].isoformat()
    with pytest.raises(Exception, match=rf"layers of bands B5, .*B12 lack the date\(s\) {missing}"):
        dock.inputs()


def test_a_band_in_two_groups_is_refused(dock, flanders, tmp_path):  # noqa: F811
    from affine import Affine

    from engine.bench.accuracy import write_raster
    from engine.bench.flanders import CRS, LEFT, TOP

    day = flanders.s2_dates[0].strftime("%Y%m%d")
    both = write_raster(
        tmp_path / f"S2_{day}_mixed.tif",
        np.full((2, 32, 32), 900, np.uint16),
        CRS,
        Affine(20.0, 0.0, LEFT, 0.0, -20.0, TOP),
        0,
        ("B04", "B05"),
    )
    layers = add([flanders.s2_10m[0], both])
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in layers]}})
    with pytest.raises(Exception, match="band B4 is in two groups of ticked layers"):
        dock.inputs()


def test_masks_without_their_sensor_and_a_reversed_season_are_refused(dock, flanders):  # noqa: F811
    s1 = add(flanders.s1)
    add(flanders.scl)
    dock.fill_rows({"s2": {"layers": []}, "s1_asc": {"layers": [lyr.id() for lyr in s1]}})
    with pytest.raises(Exception, match="Cloud masks are ticked for 's2', but no layer of 's2' is ticked"):
        dock.inputs()
    dock.crops_panel.set_season("2018-10-31", "2018-03-01")
    with pytest.raises(Exception, match=r"The season ends \(2018-03-01\) before it starts \(2018-10-31\)"):
        dock.crops_panel.season()


def test_classify_parcels_needs_a_map_and_a_parcels_file(dock, flanders, tmp_path):  # noqa: F811
    dock.classify_parcels()
    assert dock.task is None and dock.messages[-1].startswith("Map the whole area first")
    (tmp_path / "probabilities.tif").write_bytes(b"")  # a map exists (its content is not read here)
    dock.last_map = {"probabilities": str(tmp_path / "probabilities.tif"), "classes": str(tmp_path / "c.tif")}
    memory = QgsVectorLayer("Polygon?crs=EPSG:32631", "drawn parcels", "memory")
    QgsProject.instance().addMapLayer(memory)
    dock.crops_panel.parcels_combo.setLayer(memory)
    dock.classify_parcels()
    assert dock.task is None and "'drawn parcels' is not a file the engine can read" in dock.messages[-1]
    parcels = QgsVectorLayer(f"{flanders.parcels}|layername=parcels", "register", "ogr")
    QgsProject.instance().addMapLayer(parcels)
    dock.crops_panel.parcels_combo.setLayer(parcels)
    assert dock.crops_panel.parcels()[:2] == (str(flanders.parcels), "parcels")
