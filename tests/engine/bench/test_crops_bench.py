"""Pieces of the crops benchmark that decide what is compared: whole-parcel folds, parcels from the
crop-code raster, per-parcel scoring, hidden summer dates."""

import numpy as np
import pytest

from engine.bench.crops import FOLDS, hide_summer, parcel_folds, per_parcel
from engine.bench.flanders import parcel_regions
from engine.probes.features import InputValues


def test_parcels_are_connected_regions_of_one_code():
    codes = np.array([[1, 1, 0, 2], [0, 1, 0, 2], [1, 0, 2, 2]])
    regions = parcel_regions(codes)
    assert regions[0, 0] == regions[1, 1] != regions[2, 0]  # 4-neighbours: the corner pixel is another parcel
    assert len(np.unique(regions[codes == 2])) == 1 and (regions[codes == 0] == 0).all()
    assert len(np.unique(regions[regions > 0])) == 3


def test_folds_never_split_a_parcel_and_spread_each_class():
    rng = np.random.default_rng(0)
    parcel = np.repeat(np.arange(20), rng.integers(1, 50, 20))
    y = (np.arange(20) % 3)[parcel]
    fold = parcel_folds(parcel, y)
    for p in np.unique(parcel):
        assert np.unique(fold[parcel == p]).size == 1
    for k in range(3):  # a class's parcels go round the folds
        per_fold = [np.unique(parcel[(fold == f) & (y == k)]).size for f in range(FOLDS)]
        assert max(per_fold) - min(per_fold) <= 1


def test_a_parcel_takes_the_mean_of_its_pixels_probabilities():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    parcel = np.array([5, 5, 5, 7])
    y = np.array([1, 1, 1, 0])
    truth, predicted = per_parcel(probabilities, parcel, y)
    assert truth.tolist() == [1, 0] and predicted.tolist() == [1, 0]  # 0.47 vs 0.53 for parcel 5


def test_hiding_summer_drops_june_to_august_only():
    dates = ("2018-05-30", "2018-06-01", "2018-07-15", "2018-08-31", "2018-09-01")
    item = InputValues("s2", ("B2",), dates, np.arange(10, dtype=np.float32).reshape(2, 5, 1), np.ones((2, 5), bool))
    hidden = hide_summer(item)
    assert hidden.dates == ("2018-05-30", "2018-09-01") and hidden.values[:, :, 0].tolist() == [[0, 4], [5, 9]]


def test_monthly_composites_take_the_median_of_clear_dates():
    from engine.probes.features import FeatureSet, combine

    dates = ("2018-05-03", "2018-05-13", "2018-05-23", "2018-06-02")
    values = np.array([[[1.0], [5.0], [3.0], [7.0]], [[2.0], [9.0], [4.0], [8.0]]], np.float32)
    valid = np.array(
        [
            [True, False, True, False],  # cell 0: the 13 May and June dates are cloudy
            [True, True, True, True],
        ]
    )
    x, record = combine(None, [InputValues("ndvi", ("NDVI",), dates, values, valid)], FeatureSet.parse("monthly"))
    assert record["columns"] == ["ndvi:NDVI@2018-05", "ndvi:NDVI@2018-06"]
    assert x[0].tolist() == [2.0, 7.0]  # May: median of 1 and 3; June: no clear date -> its value as filled
    assert x[1].tolist() == [4.0, 8.0]


def test_the_speckle_filter_averages_each_date_over_three_by_three_pixels():
    from engine.bench.crops import speckle_filtered

    values = np.zeros((4 * 4, 2, 1), np.float32)
    values[5, 0, 0] = 9.0  # one bright pixel (row 1, column 1) on the first date
    values[0, 1, 0] = np.nan  # a pixel without a value on the second date
    item = InputValues("s1_asc", ("VV",), ("2018-05-01", "2018-05-13"), values, np.ones((16, 2), bool))
    out = speckle_filtered(item, (4, 4)).values.reshape(4, 4, 2)
    assert out[0, 0, 0] == 1.0 and out[2, 2, 0] == 1.0 and out[3, 3, 0] == 0.0  # 9 spread over its 3 x 3 block
    assert out[1, 1, 1] == 0.0 and np.isfinite(out[..., 1]).all()  # the missing value left out of the means
    assert out[..., 0].sum() == 9.0  # an inner pixel's value is spread, not lost or counted twice


def test_auto_may_keep_each_sensor_alone_when_given_several():
    from engine.bench.crops import auto_sets

    s2 = InputValues("s2", ("B2",), ("2018-05-01",), np.zeros((1, 1, 1), np.float32))
    s1 = InputValues("s1_asc", ("VV",), ("2018-05-01",), np.zeros((1, 1, 1), np.float32))
    assert auto_sets([s2]) == ["monthly+stats"]
    assert auto_sets([s2, s1]) == ["monthly+stats", "monthly+stats@s2", "monthly+stats@s1_asc"]


def test_the_fusion_gain_is_paired_fold_by_fold():
    from engine.bench.crops import fusion_gains

    def figures(*folds):
        return {"macro_f1": {"folds": list(folds)}}

    methods = {
        "S2 | auto | pixels": figures(0.5, 0.6, 0.7),
        "S2+S1 | auto | pixels": figures(0.6, 0.6, 0.5),
        "S2+S1 | random forest on raw bands | pixels": figures(0.9, 0.9, 0.9),  # no S2-alone row to pair
    }
    (gain,) = fusion_gains(methods)
    assert (gain["fused"], gain["optical"], gain["method"], gain["level"]) == ("S2+S1", "S2", "auto", "pixels")
    np.testing.assert_allclose(gain["folds"], [0.1, 0.0, -0.2], atol=1e-12)
    assert gain["mean"] == pytest.approx(-0.1 / 3) and (gain["folds_up"], gain["folds_down"]) == (1, 1)
