"""Pieces of the accuracy benchmark that decide what is compared (the figures come from running it)."""

from __future__ import annotations

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
    result = {"dataset": "D", "split": "5 folds", "methods": {
        "probe": {"macro_f1": summarise([0.5, 0.7]), "overall_accuracy": summarise([0.8, 0.9])}}}
    table = markdown_table([result])
    assert "| D (5 folds) | probe | 0.600 ± 0.100 | 0.850 ± 0.050 |" in table


def test_table_names_auto_choices_and_the_independent_area_check():
    result = {"dataset": "D", "split": "5 folds", "methods": {
        "probe": {"macro_f1": summarise([0.5, 0.7]), "overall_accuracy": summarise([0.8, 0.9])}},
        "auto_choice_per_fold": ["linear on raw bands", "knn on raw bands"], "auto_final_choice": "linear on raw bands",
        "independent_area": {"west_nested_estimate": {"macro_f1": summarise([0.4, 0.6])}, "choice": "linear on raw bands",
                             "east_score": {"macro_f1": 0.55, "overall_accuracy": 0.8}, "gap_in_fold_std": 0.5}}
    table = markdown_table([result])
    assert "D: auto chose per outer fold linear on raw bands, knn on raw bands; on all labels linear on raw bands." in table
    assert "western half, macro-F1 0.500 ± 0.100" in table and "scores 0.550" in table and "+0.5 fold standard" in table
