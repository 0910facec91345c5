"""Pieces of the accuracy benchmark that decide what is compared (the figures come from running it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from engine.bench.accuracy import markdown_table, raw_features, summarise
from tests.engine.rasters import write_geotiff


def test_raw_features_sample_every_file_at_the_cell_centres(tmp_path):
    # A 30 m raster whose value encodes (band, row, col), read at the cells of a 10 m grid.
    rows, cols = np.mgrid[0:4, 0:5]
    coarse = np.stack([100 * rows + cols, 1000 + 100 * rows + cols]).astype(np.float32)
    coarse[1, 3, 4] = -9999
    first = write_geotiff(tmp_path / "a.tif", coarse, origin=(0.0, 120.0), pixel=30.0, nodata=-9999)
    second = write_geotiff(tmp_path / "b.tif", coarse[:1] + 7, origin=(0.0, 120.0), pixel=30.0)
    grid = Affine(10.0, 0, 0.0, 0, -10.0, 120.0)
    cell_rows, cell_cols = np.array([0, 2, 5, 11]), np.array([0, 4, 7, 14])
    features = raw_features([first, second], grid, cell_rows, cell_cols)
    expected_rows, expected_cols = cell_rows // 3, cell_cols // 3
    np.testing.assert_array_equal(features[:, 0], 100 * expected_rows + expected_cols)
    np.testing.assert_array_equal(features[:3, 1], 1000 + 100 * expected_rows[:3] + expected_cols[:3])
    assert np.isnan(features[3, 1])  # nodata stays missing: the benchmark drops that cell for every method
    np.testing.assert_array_equal(features[:, 2], features[:, 0] + 7)


def test_table_reports_mean_and_spread_per_method():
    result = {
        "dataset": "D",
        "split": "5 folds",
        "methods": {"probe": {"macro_f1": summarise([0.5, 0.7]), "overall_accuracy": summarise([0.8, 0.9])}},
    }
    table = markdown_table([result])
    assert "| D (5 folds) | probe | 0.600 ± 0.100 | 0.850 ± 0.050 |" in table


def test_table_names_auto_choices_and_the_independent_area_check():
    result = {
        "dataset": "D",
        "split": "5 folds",
        "methods": {"probe": {"macro_f1": summarise([0.5, 0.7]), "overall_accuracy": summarise([0.8, 0.9])}},
        "auto_choice_per_fold": ["linear on raw bands", "knn on raw bands"],
        "auto_final_choice": "linear on raw bands",
        "independent_area": {
            "west_nested_estimate": {"macro_f1": summarise([0.4, 0.6])},
            "choice": "linear on raw bands",
            "east_score": {"macro_f1": 0.55, "overall_accuracy": 0.8},
            "gap_in_fold_std": 0.5,
        },
    }
    table = markdown_table([result])
    assert (
        "D: auto chose per outer fold linear on raw bands, knn on raw bands; on all labels linear on raw bands."
        in table
    )
    assert "western half, macro-F1 0.500 ± 0.100" in table and "scores 0.550" in table and "+0.5 fold standard" in table


def bench_dataset(modality: str, bands: tuple[str, ...], dates: list[str]):
    from engine.bench.accuracy import Dataset

    return Dataset(
        name="D",
        description="",
        job={"modalities": {modality: {"dates": dates}}},
        raw_files=[],
        labels=Path("labels.gpkg"),
        class_field="class",
        ignore_values=(),
        block_size_m=0.0,
        split="",
        raw_modality=modality,
        raw_bands=bands,
    )


def test_choice_feature_sets_follow_what_the_inputs_allow():
    from engine.bench.accuracy import choice_feature_sets

    raw = np.arange(4 * 3 * 10, dtype=np.float32).reshape(4, 30) + 1
    s2 = bench_dataset(
        "s2",
        ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
        ["2020-01-01", "2020-02-01", "2020-03-01"],
    )
    local = np.ones((4, 2), np.float32)
    sets = choice_feature_sets(s2, raw, local)
    assert list(sets) == ["raw", "raw+stats+indices", "embeddings+raw"]
    # 30 raw, 10 bands x 5 statistics, 3 indices x (3 dates + 5 statistics)
    assert [x.shape[1] for x in sets.values()] == [30, 30 + 50 + 24, 32]
    # One index band: no index can be derived and, without an encoder, no embedding set.
    ndvi = bench_dataset("ndvi", ("NDVI",), [f"2020-0{m}-01" for m in range(1, 7)])
    sets = choice_feature_sets(ndvi, raw[:, :6], None)
    assert list(sets) == ["raw", "raw+stats"] and sets["raw"].shape == (4, 6)
    # One date: indices but no statistics.
    single = bench_dataset("s2", s2.raw_bands, ["2020-01-01"])
    assert list(choice_feature_sets(single, raw[:, :10], None)) == ["raw", "raw+indices"]
