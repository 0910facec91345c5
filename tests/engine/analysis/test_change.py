"""Change magnitude from per-patch embeddings and its automatic threshold."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.change import change_features, change_layer, change_magnitude, otsu_threshold
from engine.errors import EngineError


def embeddings(seed: int = 0, shape=(20, 30, 16)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_identical_periods_have_zero_change(metric):
    before = embeddings()
    magnitude = change_magnitude(before, before.copy(), metric)
    np.testing.assert_allclose(magnitude, 0.0, atol=1e-6)
    binary, threshold = change_layer(magnitude)
    assert (binary == 0).all()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_a_swapped_area_is_found(metric):
    before = embeddings(0)
    after = before + np.random.default_rng(1).normal(scale=0.05, size=before.shape)  # noise: no change
    # The area rows 5..10, cols 10..20 now looks like somewhere else entirely.
    after[5:10, 10:20] = embeddings(2)[5:10, 10:20]
    magnitude = change_magnitude(before, after, metric)
    inside = np.zeros(magnitude.shape, bool)
    inside[5:10, 10:20] = True
    assert magnitude[inside].min() > 5 * magnitude[~inside].max()
    binary, threshold = change_layer(magnitude)
    assert not binary[~inside].any()
    # Otsu favours the large unchanged class: the odd weakly-changed patch may fall below it.
    assert (binary[inside] == 1).mean() > 0.95


def test_otsu_splits_two_modes_and_handles_nodata():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.1, 0.02, 500), rng.normal(0.8, 0.05, 100), [np.nan, np.inf]]
    threshold = otsu_threshold(values)
    assert 0.2 < threshold < 0.65
    binary, _ = change_layer(values)
    assert binary[-2] == 255 and binary[-1] == 255
    assert (binary[:500] == 0).all() and (binary[500:600] == 1).all()


def test_nodata_embeddings_give_nodata_change():
    before, after = embeddings(), embeddings(1)
    before[0, 0, :] = np.nan
    magnitude = change_magnitude(before, after)
    assert np.isnan(magnitude[0, 0]) and np.isfinite(magnitude[1:, :]).all()
    binary, _ = change_layer(magnitude)
    assert binary[0, 0] == 255


def test_change_features_and_bad_input():
    before, after = embeddings(0, (4, 8)), embeddings(1, (4, 8))
    features = change_features(before, after)
    assert features.shape == (4, 16)
    np.testing.assert_allclose(features[:, :8], np.abs(after - before))
    with pytest.raises(EngineError, match="different shapes"):
        change_magnitude(before, after[:, :4])
    with pytest.raises(EngineError, match="metric"):
        change_magnitude(before, after, "manhattan")
    with pytest.raises(EngineError, match="no valid patch"):
        otsu_threshold(np.full(5, np.nan))
