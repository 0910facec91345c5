"""The stratified area estimator (Olofsson et al. 2014) against a worked example derived by hand,
and its 95 % interval's coverage on simulated maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analysis.area import allocate_sample, stratified_estimate
from engine.errors import EngineError

# Worked example, derived by hand from the formulas (not taken from the paper):
# a 10 000-pixel map of 30 m pixels: 8 000 pixels mapped "forest", 2 000 "crop".
# Stratum forest: 50 samples, 45 forest and 5 crop on the ground; stratum crop: 40 samples,
# 4 forest and 36 crop. Then W = (0.8, 0.2) and
#   p = [[0.8 * 45/50, 0.8 * 5/50], [0.2 * 4/40, 0.2 * 36/40]] = [[0.72, 0.08], [0.02, 0.18]],
#   forest share 0.74 -> 0.74 * 9e6 m2 = 6.66e6 m2; crop share 0.26 -> 2.34e6 m2;
#   V(share) = 0.8^2 * 0.9 * 0.1 / 49 + 0.2^2 * 0.1 * 0.9 / 39 (the same for both classes);
#   U = (45/50, 36/40) = (0.9, 0.9), V(U) = (0.09 / 49, 0.09 / 39);
#   P_forest = 0.72 / 0.74 = 36/37, P_crop = 0.18 / 0.26 = 9/13;
#   N_.forest = 8000 * 45/50 + 2000 * 4/40 = 7400, N_.crop = 8000 * 5/50 + 2000 * 36/40 = 2600;
#   V(P_forest) = [8000^2 (1/37)^2 (0.09/49) + (36/37)^2 * 2000^2 * 0.09/39] / 7400^2,
#   V(P_crop)   = [2000^2 (4/13)^2 (0.09/39) + (9/13)^2 * 8000^2 * 0.09/49] / 2600^2;
#   OA = 0.72 + 0.18 = 0.9, V(OA) = 0.8^2 * 0.09/49 + 0.2^2 * 0.09/39.
COUNTS = [[45, 5], [4, 36]]
MAPPED = [8000, 2000]
NAMES = ("forest", "crop")
PIXEL = 900.0


def test_worked_example():
    e = stratified_estimate(np.array(COUNTS), MAPPED, NAMES, PIXEL)
    share_var = 0.64 * 0.09 / 49 + 0.04 * 0.09 / 39
    np.testing.assert_allclose(e.proportions, [[0.72, 0.08], [0.02, 0.18]])
    np.testing.assert_allclose(e.area_share, [0.74, 0.26])
    np.testing.assert_allclose(e.area, [6.66e6, 2.34e6])
    np.testing.assert_allclose(e.area_se, [math.sqrt(share_var) * 9e6] * 2)
    np.testing.assert_allclose(e.area_ci95, [1.959964 * math.sqrt(share_var) * 9e6] * 2)
    np.testing.assert_allclose(e.users_accuracy, [0.9, 0.9])
    np.testing.assert_allclose(e.users_se, [math.sqrt(0.09 / 49), math.sqrt(0.09 / 39)])
    np.testing.assert_allclose(e.producers_accuracy, [36 / 37, 9 / 13])
    v_forest = (8000**2 * (1 / 37) ** 2 * 0.09 / 49 + (36 / 37) ** 2 * 2000**2 * 0.09 / 39) / 7400**2
    v_crop = (2000**2 * (4 / 13) ** 2 * 0.09 / 39 + (9 / 13) ** 2 * 8000**2 * 0.09 / 49) / 2600**2
    np.testing.assert_allclose(e.producers_se, [math.sqrt(v_forest), math.sqrt(v_crop)])
    assert e.overall_accuracy == pytest.approx(0.9)
    assert e.overall_se == pytest.approx(math.sqrt(share_var))
    rows = e.rows()
    assert rows[0]["class"] == "forest" and rows[0]["mapped_area"] == pytest.approx(7.2e6)
    assert rows[1]["area_ci95_low"] < 2.34e6 < rows[1]["area_ci95_high"]


def test_a_perfect_map_gives_its_own_areas_without_spread():
    e = stratified_estimate(np.diag([30, 20, 10]), [500, 300, 200], ("a", "b", "c"), 100.0)
    np.testing.assert_allclose(e.area, [5e4, 3e4, 2e4])
    np.testing.assert_allclose(e.area_se, 0.0)
    np.testing.assert_allclose(e.users_accuracy, 1.0)
    np.testing.assert_allclose(e.producers_accuracy, 1.0)
    # Those zero standard errors come from a sample without variation: the estimate says so.
    assert [c.split(":")[0] for c in e.caveats()] == [
        f"Every one of the {n} points mapped {k} was right" for n, k in ((30, "a"), (20, "b"), (10, "c"))
    ]


def test_a_mapped_class_no_reference_point_confirms_is_flagged():
    # Map class b: both its points are really a; no reference point is b.
    e = stratified_estimate(np.array([[8, 0, 2], [2, 0, 0], [1, 0, 9]]), [500, 300, 200], ("a", "b", "c"))
    assert e.area[1] == 0 and e.area_se[1] == 0
    caveats = e.caveats()
    assert caveats[0].startswith("No reference point is b: its estimated area is 0")
    assert any("mapped b was wrong" in c for c in caveats) and len(caveats) == 2
    assert e.summary()["caveats"] == caveats


def test_ci95_covers_the_true_area_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    # A population of 20 000 pixels, 3 classes; the map errs more in the rare class.
    truth = rng.choice(3, 20000, p=[0.6, 0.3, 0.1])
    flip = rng.random(truth.size) < np.array([0.08, 0.15, 0.3])[truth]
    mapped = np.where(flip, (truth + rng.integers(1, 3, truth.size)) % 3, truth)
    true_area = np.bincount(truth, minlength=3).astype(float)
    per_stratum = [60, 50, 50]
    covered = np.zeros(3)
    runs = 400
    for _ in range(runs):
        counts = np.zeros((3, 3))
        for i, n in enumerate(per_stratum):
            picks = rng.choice(np.flatnonzero(mapped == i), n, replace=False)
            np.add.at(counts[i], truth[picks], 1)
        e = stratified_estimate(counts, np.bincount(mapped, minlength=3), ("a", "b", "c"))
        covered += np.abs(e.area - true_area) <= e.area_ci95
    coverage = covered / runs
    assert np.all((coverage > 0.90) & (coverage < 0.99)), coverage


def test_a_mapped_class_with_fewer_than_two_samples_is_named():
    with pytest.raises(EngineError, match="'crop' \\(1\\).*sample-map"):
        stratified_estimate(np.array([[10, 0], [0, 1]]), [10, 10], ("forest", "crop"))


def test_a_class_absent_from_the_map_needs_no_sample():
    e = stratified_estimate(np.array([[9, 1, 0], [0, 0, 0], [1, 0, 9]]), [50, 0, 50], ("a", "b", "c"))
    assert e.area[1] == pytest.approx(0.05 * 100)  # one of stratum a's ten samples is b on the ground
    assert e.area.sum() == pytest.approx(100)


def test_allocation_floor_then_proportional():
    sizes = allocate_sample([9000, 900, 100, 0], 300, minimum=50)
    assert sizes.sum() == 300 and sizes[3] == 0
    assert sizes[1] >= 50 and sizes[2] >= 50 and sizes[0] > sizes[1]
    assert allocate_sample([5, 1000], 60, minimum=50).tolist() == [5, 55]  # a tiny class gives all it has
    with pytest.raises(EngineError, match="raise the total"):
        allocate_sample([100, 100, 100], 100, minimum=50)
