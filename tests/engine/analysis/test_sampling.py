"""Sample sizes from a target standard error give that standard error, and the post-stratified
estimator's 95 % interval covers the truth about 95 % of the time for a simple random sample."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.estimators import assess, by_map_class
from engine.analysis.sampling import Target, allocate_for_target, size_for_target, stratum_moments

MAPPED = np.array([300_000, 150_000, 3_000_000, 6_550_000])
USERS = (0.7, 0.6, 0.9, 0.95)


@pytest.mark.parametrize("allocation", ["proportional", "neyman", "equal"])
@pytest.mark.parametrize("target_class", [None, 1])
def test_the_size_for_a_target_gives_that_standard_error(allocation, target_class):
    """Draw, many times, samples of the computed size from strata whose 0/1 variable has the
    expected means: the spread of the stratified estimate is the target (the floor left out)."""
    target = Target(0.01 if target_class is None else 0.004, USERS, target_class)
    weights = MAPPED / MAPPED.sum()
    mean, sd = stratum_moments(weights, target)
    n = size_for_target(MAPPED, target, "stratified", allocation)
    sizes = allocate_for_target(MAPPED, n, allocation, 0, sd)
    rng = np.random.default_rng(0)
    estimates = [(weights * rng.binomial(sizes, mean) / sizes).sum() for _ in range(4000)]
    assert np.std(estimates) == pytest.approx(target.standard_error, rel=0.08)
    assert sizes.sum() - n <= len(MAPPED)  # rounding up only


def test_neyman_needs_the_fewest_points():
    target = Target(0.01, USERS)
    sizes = {a: size_for_target(MAPPED, target, "stratified", a) for a in ("proportional", "neyman", "equal")}
    assert sizes["neyman"] == min(sizes.values())
    assert size_for_target(MAPPED, target, "simple") >= sizes["proportional"]


def test_post_stratified_simple_random_interval_covers_the_truth():
    rng = np.random.default_rng(3)
    truth = rng.choice(3, 30_000, p=[0.6, 0.3, 0.1])
    wrong = rng.random(truth.size) < np.array([0.08, 0.15, 0.3])[truth]
    mapped = np.where(wrong, (truth + rng.integers(1, 3, truth.size)) % 3, truth)
    pixels = np.bincount(mapped, minlength=3)
    true_area = np.bincount(truth, minlength=3)
    runs, covered = 300, np.zeros(3)
    for _ in range(runs):
        picks = rng.choice(truth.size, 300, replace=False)
        e = assess(by_map_class(mapped[picks], truth[picks], pixels, "abc"), "abc", pixels, "simple")
        covered += np.abs(e.area - true_area) <= e.area_ci95
    coverage = covered / runs
    assert np.all((coverage > 0.90) & (coverage < 0.99)), coverage
