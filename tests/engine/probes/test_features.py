"""Feature sets: raw bands, temporal statistics, indices, combinations, recorded columns."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import EngineError
from engine.probes.features import FeatureSet, InputValues, check_columns, combine, input_features

S2 = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def s2_series(n=4, dates=("2020-05-01", "2020-06-01", "2020-07-01")):
    rng = np.random.default_rng(0)
    return InputValues("s2", S2, dates, rng.uniform(100, 5000, (n, len(dates), len(S2))))


def test_parse_orders_parts_and_refuses_unknown_ones():
    assert FeatureSet.parse("raw+embeddings").name == "embeddings+raw"
    assert FeatureSet.parse("indices, stats").parts == ("stats", "indices")
    with pytest.raises(EngineError, match="Unknown feature set 'bands'.*embeddings\\+raw"):
        FeatureSet.parse("bands")


def test_raw_stats_and_indices_columns():
    s2 = s2_series()
    x, names = input_features([s2], FeatureSet.parse("raw+stats+indices"))
    assert x.shape == (4, len(names))
    assert names[0] == "s2:B2@2020-05-01" and "s2:B4:median" in names
    ndvi = names.index("s2:NDVI@2020-06-01")
    nir, red = s2.values[:, 1, S2.index("B8")], s2.values[:, 1, S2.index("B4")]
    np.testing.assert_allclose(x[:, ndvi], (nir - red) / (nir + red), rtol=1e-5)
    mean = names.index("s2:B11:mean")
    np.testing.assert_allclose(x[:, mean], s2.values[:, :, S2.index("B11")].mean(1), rtol=1e-5)
    assert len([n for n in names if n.startswith("s2:NDWI")]) == 3 + 5


def test_radar_ratio_in_db_from_linear_or_db_inputs():
    linear = InputValues("s1_asc", ("VV", "VH"), ("2020-01-01",), np.array([[[0.1, 0.01]]]))
    x, names = input_features([linear], FeatureSet.parse("indices"))
    assert names == ["s1_asc:VV/VH dB@2020-01-01"] and x[0, 0] == pytest.approx(10.0)
    db = InputValues("s1_asc", ("VV", "VH"), ("2020-01-01",), np.array([[[-8.0, -15.0]]]))
    assert input_features([db], FeatureSet.parse("indices"))[0][0, 0] == pytest.approx(7.0)


def test_stats_need_dates():
    image = InputValues("aerial", ("R", "G", "B", "NIR"), (), np.ones((3, 1, 4)))
    with pytest.raises(EngineError, match="at least 2 dates.*aerial \\(no dates\\).*raw or indices"):
        input_features([image], FeatureSet.parse("stats"))
    x, names = input_features([image], FeatureSet.parse("raw+indices"))
    assert names[:2] == ["aerial:R@image", "aerial:G@image"] and "aerial:NDVI@image" in names


def test_indices_need_suitable_bands():
    dem = InputValues("dem", ("height",), (), np.ones((2, 1, 1)))
    with pytest.raises(EngineError, match="No spectral index.*dem: height"):
        input_features([dem], FeatureSet.parse("indices"))


def test_combination_is_recorded_and_checked():
    s2 = s2_series()
    embeddings = np.ones((4, 3), np.float32)
    x, record = combine(embeddings, [s2], FeatureSet.parse("embeddings+raw"))
    assert x.shape == (4, 3 + 30) and record["set"] == "embeddings+raw"
    assert record["inputs"]["s2"]["dates"] == list(s2.dates)
    check_columns(record, record["columns"])
    other = s2_series(dates=("2021-05-01", "2021-06-01", "2021-07-01"))
    _, other_record = combine(embeddings, [other], FeatureSet.parse("embeddings+raw"))
    with pytest.raises(EngineError, match="missing: s2:B2@2020-05-01.*same modalities, bands and dates"):
        check_columns(record, other_record["columns"], "p.safetensors")
    with pytest.raises(EngineError, match="needs the input rasters"):
        input_features([], FeatureSet.parse("raw"))


def test_a_set_scoped_to_one_modality_reads_only_its_columns():
    s2 = s2_series()
    s1 = InputValues("s1_asc", ("VV", "VH"), s2.dates, np.full((4, 3, 2), 0.05))
    scoped = FeatureSet.parse("monthly+stats@s2")
    assert scoped.name == "stats+monthly@s2" and FeatureSet.parse(scoped.name) == scoped
    x, names = input_features([s2, s1], scoped)
    assert names == input_features([s2], FeatureSet.parse("monthly+stats"))[1]
    assert all(n.startswith("s2:") for n in names) and x.shape == (4, len(names))
    _, radar = input_features([s2, s1], FeatureSet.parse("raw@s1_asc"))
    assert radar == [f"s1_asc:{b}@{d}" for d in s2.dates for b in ("VV", "VH")]
    with pytest.raises(EngineError, match="'raw@s1_des' reads the modality 's1_des'.*they have: s2, s1_asc"):
        input_features([s2, s1], FeatureSet.parse("raw@s1_des"))
    with pytest.raises(EngineError, match="reads only embeddings: drop '@'"):
        FeatureSet.parse("embeddings@s2")


def test_a_vote_of_sensors_reads_both_and_a_vote_of_one_sensor_only_it():
    from engine.probes.selection import Candidate, Vote

    late = Vote((Candidate("random_forest", "monthly@s2"), Candidate("linear", "monthly+stats@s1_asc")))
    assert late.features == "stats+monthly"
    one = Vote((Candidate("random_forest", "monthly@s2"), Candidate("knn", "raw@s2")))
    assert one.features == "raw+monthly@s2"
