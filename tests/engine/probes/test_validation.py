"""Spatial validation: autocorrelation-sized blocks, buffered folds, nested selection without leaks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.probes.classifiers import ProbeConfig
from engine.probes.folds import (
    ValidationImpossible,
    point_block_rule,
    same_class_range,
    spatial_folds,
    spatial_units,
)
from engine.probes.selection import (
    Candidate,
    Setup,
    Vote,
    learning_curve,
    nested_selection,
)
from engine.runtime.progress import Reporter


def patchy_points(n=600, patch=20, size=200, seed=0):
    """Points whose class is constant over patch x patch squares (3 classes)."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    y = ((rows // patch) * 7 + (cols // patch) * 3) % 3
    return rows, cols, y


def test_range_follows_the_size_of_class_patches():
    rows, cols, y = patchy_points(patch=20)
    wide = same_class_range(rows, cols, y)
    assert 8 <= wide <= 40, wide
    noise = np.random.default_rng(1).integers(0, 3, y.size)
    assert same_class_range(rows, cols, noise) <= 5  # the first distance with enough pairs to judge
    small = same_class_range(*patchy_points(patch=5)[:2], patchy_points(patch=5)[2])
    assert small < wide


def test_block_rule_has_a_floor():
    rows, cols = np.array([0, 0, 50, 50]), np.array([0, 50, 0, 50])
    rule = point_block_rule(rows, cols, np.array([0, 1, 0, 1]))
    assert rule.block_cells >= 2 and rule.block_cells >= 2 * rule.spacing_cells
    assert "autocorrelation range" in rule.describe(10.0)


def test_folds_never_split_a_unit_and_no_training_cell_touches_a_test_cell():
    rows, cols, y = patchy_points()
    units = spatial_units(np.arange(y.size), np.ones(y.size, bool), rows, cols, block_cells=25)
    folds = spatial_folds(y, units, rows, cols, 5, buffer_cells=1)
    assert folds.n_folds == 5
    for u in np.unique(units):
        assert np.unique(folds.test_fold[units == u]).size == 1
    for f in range(folds.n_folds):
        test, train = folds.test(f), folds.train[f]
        assert test.any() and train.any() and not (test & train).any()
        gap = np.maximum(
            np.abs(rows[train][:, None] - rows[test][None]), np.abs(cols[train][:, None] - cols[test][None])
        )
        assert gap.min() > 1
    assert sum(folds.buffered_out()) > 0  # some cells were next to a test block


def test_a_class_in_one_unit_trains_always_and_is_named():
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    units = np.array([0, 0, 1, 1, 2, 2, 3, 4])  # class 2 only in unit 2
    rows, cols = np.arange(8) * 5, np.zeros(8, int)
    folds = spatial_folds(y, units, rows, cols, 3, buffer_cells=0)
    assert folds.unvalidated == [2]
    assert np.all(folds.test_fold[y == 2] == -1)
    assert all(folds.train[f][y == 2].all() for f in range(folds.n_folds))


def test_labels_in_one_block_cannot_be_validated():
    with pytest.raises(ValidationImpossible, match="no spatially separate validation.*without a score"):
        spatial_folds(np.array([0, 1, 0, 1]), np.zeros(4, int), np.arange(4), np.zeros(4, int))


def informative_setup(seed=0):
    rows, cols, y = patchy_points(n=500, seed=seed)
    rng = np.random.default_rng(seed)
    good = (np.eye(3)[y] * 3 + rng.normal(size=(y.size, 3))).astype(np.float32)
    noise = rng.normal(size=(y.size, 4)).astype(np.float32)
    units = spatial_units(np.arange(y.size), np.ones(y.size, bool), rows, cols, block_cells=25)
    setup = Setup(
        {"good": good, "noise": noise},
        y,
        ["a", "b", "c"],
        ProbeConfig(epochs=50, trees=20, neighbours=5),
        max_per_class=100,
    )
    return setup, units, rows, cols


def test_nested_selection_picks_the_informative_features_and_never_sees_the_outer_test(monkeypatch):
    setup, units, rows, cols = informative_setup()
    folds = spatial_folds(setup.y, units, rows, cols, 4)
    candidates = [Candidate("linear", "noise"), Candidate("knn", "good"), Candidate("random_forest", "noise")]
    seen = []
    original = Setup.fit_proba

    def spy(self, candidate, train, test, rng=None):
        seen.append((self.y.size, train.copy(), test.copy()))
        return original(self, candidate, train, test, rng)

    monkeypatch.setattr(Setup, "fit_proba", spy)
    progress = Recorder()
    selection = nested_selection(setup, candidates, folds, units, rows, cols, progress)
    # one progress message after each fit (others come from inside fits), counting to the true total,
    # naming candidate and folds, time left
    after = progress.counted()
    assert len(after) == len(seen) and progress.percents[-1] == pytest.approx(100.0)
    assert progress.percents == sorted(progress.percents)
    assert f"fit {len(seen)} of {len(seen)}" in progress.messages[-1]
    assert all("left" in m for m in after[:-1])
    assert "candidate 1 of 3 (linear on noise), fold 1 of 4" in progress.messages[0]
    assert (
        "candidate 3 of 3 (random_forest on noise), inner fit 6 of 6 (outer folds 3 and 4 held out)"
        in progress.messages[-1]
    )
    # 4 outer fits and 6 inner fits (one per pair of outer folds) per candidate
    assert len(seen) == 3 * (4 + 6)
    assert selection.final == Candidate("knn", "good")
    assert all(c == Candidate("knn", "good") for c in selection.chosen_per_fold)
    assert np.mean(selection.nested.macro_f1) > 0.8
    assert len(selection.nested.macro_f1) == folds.n_folds
    assert all(n >= 2 for n in selection.inner_folds)
    # Inner fits train inside two outer folds' training parts and predict cells those parts keep:
    # no fit used to choose for outer fold f saw fold f's test cells.
    outer_train = [folds.train[f] for f in range(folds.n_folds)]
    inner = seen[3 * folds.n_folds :]
    for _, train, _test in inner:
        holders = [f for f in range(folds.n_folds) if not (train & ~outer_train[f]).any()]
        assert len(holders) >= 2
        assert all(not (train & folds.test(f)).any() for f in holders)
    table = selection.table()
    assert {r["candidate"] for r in table} == {c.name for c in candidates}
    assert sum(r["chosen"] for r in table) == 1


class Recorder(Reporter):
    def __init__(self):
        self.percents, self.messages = [], []

    def progress(self, percent, message=""):
        self.percents.append(percent)
        self.messages.append(message)

    def counted(self) -> list[str]:
        """The messages sent after a fit, not from inside one."""
        return [m for m in self.messages if "% done)" not in m]


def test_learning_curve_grows_to_all_cells():
    setup, units, rows, cols = informative_setup()
    folds = spatial_folds(setup.y, units, rows, cols, 3)
    progress = Recorder()
    curve = learning_curve(setup, Candidate("linear", "good"), folds, sizes=(2, 10, 40), reporter=progress)
    assert len(progress.counted()) == 4 * 3 and progress.percents[-1] == pytest.approx(100.0)
    assert "learning curve: point 4 of 4 (100 cells per class), fold 3 of 3; fit 12 of 12" in progress.messages[-1]
    assert [p["cells_per_class"] for p in curve][:3] == [2, 10, 40] and curve[-1]["all"]
    assert curve[-1]["cells_per_class"] == 100  # the setup's cap
    assert curve[-1]["macro_f1"]["mean"] >= curve[0]["macro_f1"]["mean"] - 0.05


def test_learning_curve_reuses_the_outer_fits_for_its_last_point(monkeypatch):
    from engine.probes.selection import cross_validate

    setup, units, rows, cols = informative_setup()
    folds = spatial_folds(setup.y, units, rows, cols, 3)
    candidate = Candidate("linear", "good")
    outer = {}
    cross_validate(setup, [candidate], folds, probabilities=outer)
    fits = []
    original = Setup.fit_proba
    monkeypatch.setattr(Setup, "fit_proba", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    reused = learning_curve(setup, candidate, folds, sizes=(2, 10, 40), outer=outer)
    assert len(fits) == 3 * 3  # the last point's 3 fits are the outer ones
    fresh = learning_curve(setup, candidate, folds, sizes=(2, 10, 40))
    assert len(fits) == 3 * 3 + 4 * 3
    assert reused == fresh  # the last point draws the outer fits' cells: the same scores


def test_the_saved_probe_is_fitted_under_the_validation_cap():
    from engine.probes.fit import FitSettings, fit_honestly

    setup, units, rows, cols = informative_setup()
    settings = FitSettings(
        ProbeConfig(kind="knn", neighbours=5), "knn", folds=3, learning_curve=False, max_per_class=40
    )
    outcome = fit_honestly(setup.features, setup.y, units, rows, cols, setup.class_names, settings)
    # kNN keeps its training cells: the cap the estimate was made under holds for the saved probe too.
    assert np.bincount(outcome.classifier.labels).tolist() == [40, 40, 40]
    assert outcome.scores is not None and len(outcome.scores.macro_f1) == 3


def test_the_default_curve_fits_three_points_and_takes_its_last_from_the_outer_fits(monkeypatch):
    from engine.probes.selection import cross_validate

    setup, units, rows, cols = informative_setup()
    setup.max_per_class = 500  # fit-probe's cap: the curve's sizes 10, 50 and 200 lie under it
    folds = spatial_folds(setup.y, units, rows, cols, 3)
    vote = Vote((Candidate("linear", "good"), Candidate("knn", "good")))
    outer = {}
    cross_validate(setup, list(vote.members), folds, probabilities=outer)
    fits = []
    original = Setup.fit_members
    monkeypatch.setattr(Setup, "fit_members", lambda self, c, p: fits.append(len(c.members)) or original(self, c, p))
    progress = Recorder()
    curve = learning_curve(setup, vote, folds, reporter=progress, outer=outer)
    largest = max(int(np.bincount(setup.y[folds.train[f]]).max()) for f in range(3))
    assert [p["cells_per_class"] for p in curve] == [10, 50, largest] and largest < 200
    assert sum(fits) == 2 * 3 * 2  # 2 fitted points x 3 folds x 2 members; the last point fits nothing
    assert len(progress.counted()) == 3 * 3  # every point and fold still reports


def test_the_choice_and_its_scores_do_not_depend_on_the_thread_count():
    import torch

    setup, units, rows, cols = informative_setup()
    folds = spatial_folds(setup.y, units, rows, cols, 3)
    candidates = [Candidate("linear", "good"), Candidate("mlp", "good"), Candidate("linear", "noise")]
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            runs.append(nested_selection(setup, candidates, folds, units, rows, cols))
            assert torch.get_num_threads() == threads  # the fits' single thread is given back
    finally:
        torch.set_num_threads(before)
    many, one = runs
    assert many.final == one.final and many.chosen_per_fold == one.chosen_per_fold
    assert [many.candidates[c].macro_f1 for c in candidates] == [one.candidates[c].macro_f1 for c in candidates]
    assert many.nested.macro_f1 == one.nested.macro_f1
    for key, proba in many.outer_probabilities.items():
        np.testing.assert_array_equal(proba, one.outer_probabilities[key])  # the same fits, bit for bit


def test_a_torch_probe_fits_and_knn_predicts_on_one_thread():
    import torch

    from engine.probes.classifiers import fit_probe
    from engine.runtime.progress import listening

    setup, *_ = informative_setup()
    seen = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with listening(lambda share: seen.append(torch.get_num_threads())):
            fit_probe(setup.features["good"], setup.y, 3, ProbeConfig(kind="linear", epochs=5))
            fitted = len(seen)
            fit_probe(setup.features["good"], setup.y, 3, ProbeConfig(kind="knn")).predict_proba(setup.features["good"])
        assert 0 < fitted < len(seen) and set(seen) == {1}  # inside the fit, inside kNN's prediction
        assert torch.get_num_threads() == 2  # and the engine's count after it
    finally:
        torch.set_num_threads(before)


def test_each_folds_pick_is_its_members_outer_fits_averaged():
    """What the crops benchmark reads instead of refitting each fold's pick."""
    setup, units, rows, cols = informative_setup()
    folds = spatial_folds(setup.y, units, rows, cols, 3)
    candidates = [Candidate("linear", "good"), Candidate("knn", "good"), Candidate("random_forest", "good")]
    selection = nested_selection(setup, candidates, folds, units, rows, cols)
    assert any(len(pick.members) > 1 for pick in selection.chosen_per_fold)  # a vote among them
    for f, pick in enumerate(selection.chosen_per_fold):
        refitted = setup.fit_proba(pick, folds.train[f], folds.test(f), np.random.default_rng(setup.seed + f))
        averaged = np.mean([selection.outer_probabilities[m, f] for m in pick.members], axis=0)
        np.testing.assert_allclose(averaged, refitted, atol=1e-6)
