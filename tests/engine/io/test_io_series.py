"""Modality inputs: files, folders and stacks, dates, band order, masks, damaged files."""

import datetime as dt
import shutil

import numpy as np
import pytest

from engine.errors import EngineError
from engine.io.series import attach_masks, resolve_modality
from tests.engine.raster_fixtures import S2_BANDS, SPECS, eolearn_cloud_masks, eolearn_s2_files, write_described

S2 = SPECS["s2"]
DATES = [dt.date(2015, 7, 11), dt.date(2015, 7, 31), dt.date(2015, 8, 20), dt.date(2015, 8, 30), dt.date(2015, 9, 9)]


@pytest.fixture
def s2_files(shared_data, tmp_path):
    return eolearn_s2_files(shared_data, tmp_path / "s2")


def test_folder_and_shuffled_list_come_back_in_date_order(s2_files, tmp_path):
    by_folder = resolve_modality("s2", S2, str(tmp_path / "s2"))
    assert by_folder.dates == DATES
    shuffled = resolve_modality("s2", S2, [str(p) for p in reversed(s2_files)])
    assert shuffled.dates == DATES and [layer.path for layer in shuffled.layers] == s2_files
    assert all(layer.bands == (1, 2, 3, 4) for layer in shuffled.layers)


def test_stack_of_dates_by_channels_reads_dates_from_band_descriptions(shared_data, tmp_path):
    scenes = np.load(shared_data / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)[:3, :, :, [1, 2, 3, 7]]
    stack = scenes.transpose(0, 3, 1, 2).reshape(12, 101, 100)
    names = [f"{d.isoformat()} {b}" for d in DATES[:3] for b in S2_BANDS]
    path = write_described(tmp_path / "stack.tif", stack, (465180, 5080250), descriptions=names)
    m = resolve_modality("s2", S2, str(path))
    assert m.dates == DATES[:3]
    assert [layer.bands for layer in m.layers] == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12)]


def test_stack_without_dates_needs_the_explicit_list(shared_data, tmp_path):
    path = write_described(tmp_path / "stack.tif", np.zeros((8, 4, 4), np.float32), (0, 0))
    with pytest.raises(EngineError, match="No acquisition date could be read for stack.tif bands 1-4"):
        resolve_modality("s2", S2, str(path))
    m = resolve_modality("s2", S2, str(path), dates=["2020-08-01", "2020-06-01"])
    assert m.dates == [dt.date(2020, 6, 1), dt.date(2020, 8, 1)]
    assert m.layers[0].bands == (5, 6, 7, 8)  # the override follows the file's order, then sorts


def test_metadata_date_is_read_when_the_name_has_none(tmp_path):
    path = write_described(
        tmp_path / "scene.tif", np.zeros((4, 4, 4), np.float32), (0, 0), tags={"ACQUISITIONDATE": "2021-05-04T10:00:00"}
    )
    assert resolve_modality("s2", S2, [str(path)]).dates == [dt.date(2021, 5, 4)]


def test_duplicate_dates_are_refused(shared_data, tmp_path, s2_files):
    # The eo-learn timestamps hold two acquisitions on 2015-12-08: same-day files collide.
    shutil.copy(s2_files[0], tmp_path / "s2" / "S2_2015-07-11_second_pass.tif")
    with pytest.raises(
        EngineError, match="same date more than once \\(2015-07-11: S2_2015-07-11_second_pass.tif, S2_20150711.tif"
    ):
        resolve_modality("s2", S2, str(tmp_path / "s2"))


def test_unparsable_dates_are_refused(tmp_path, s2_files):
    shutil.copy(s2_files[0], tmp_path / "s2" / "latest.tif")
    with pytest.raises(EngineError, match="No acquisition date could be read for latest.tif"):
        resolve_modality("s2", S2, str(tmp_path / "s2"))


def test_wrong_band_count_names_the_file_and_the_fix(tmp_path):
    path = write_described(tmp_path / "S2_20200101.tif", np.zeros((3, 4, 4), np.float32), (0, 0))
    with pytest.raises(
        EngineError, match="has 3 band\\(s\\), but the model's 's2' modality expects 4 \\(B2, B3, B4, B8\\)"
    ):
        resolve_modality("s2", S2, [str(path)])


def test_band_order_is_checked_by_description_with_a_fix(tmp_path):
    path = write_described(
        tmp_path / "S2_20200101.tif",
        np.zeros((5, 4, 4), np.float32),
        (0, 0),
        descriptions=["B08", "B04", "B03", "B02", "SCL"],
    )
    with pytest.raises(
        EngineError, match='expects B2, B3, B4, B8 in this order. Reorder them with "bands": \\[4, 3, 2, 1\\]'
    ):
        resolve_modality("s2", S2, [str(path)], bands=[1, 2, 3, 4])
    assert resolve_modality("s2", S2, [str(path)], bands=[4, 3, 2, 1]).layers[0].bands == (4, 3, 2, 1)


def test_bands_without_descriptions_are_checked_by_count_only(tmp_path):
    spec = SPECS["s1"].__class__("s1r", "series", ("VV", "VH", "VV/VH"), 10.0, True, (0.0,) * 3, (1.0,) * 3)
    path = write_described(tmp_path / "S1_20200101.tif", np.zeros((3, 4, 4), np.float32), (0, 0))
    assert resolve_modality("s1r", spec, [str(path)]).layers[0].bands == (1, 2, 3)


def test_empty_and_truncated_files_are_refused(tmp_path, s2_files):
    empty = tmp_path / "S2_20200101.tif"
    empty.touch()
    with pytest.raises(EngineError, match="empty \\(0 bytes\\)"):
        resolve_modality("s2", S2, [str(empty)])
    truncated = tmp_path / "S2_20200102.tif"
    truncated.write_bytes(s2_files[0].read_bytes()[:300])
    with pytest.raises(EngineError, match="S2_20200102.tif"):
        resolve_modality("s2", S2, [str(truncated)])


def test_masks_are_matched_by_date(shared_data, tmp_path, s2_files):
    masks = eolearn_cloud_masks(shared_data, tmp_path / "clm")
    m = attach_masks(resolve_modality("s2", S2, str(tmp_path / "s2")), [str(p) for p in reversed(masks)])
    assert [layer.path for layer in m.masks] == masks  # reordered to the data's dates
    with pytest.raises(EngineError, match="2 layer\\(s\\) for 5 date\\(s\\)"):
        attach_masks(m, [str(p) for p in masks[:2]])
