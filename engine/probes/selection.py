"""Honest choice among candidates (classifier x feature set): cross-validation on spatial folds
(engine.probes.folds), nested selection, learning curves.

- Figures: mean and standard deviation over the folds, plus the pooled confusion matrix.
- Selection (``auto``): nested. For each outer fold, every candidate (classifier x
  feature set) is scored by an inner blocked cross-validation on the outer training
  units only; the ``VOTE`` best by inner macro-F1 -- those within one standard deviation
  over inner folds of the best -- are refitted on the outer training part, and their
  averaged probabilities (a soft vote) are scored on the outer test fold. The outer
  scores of that procedure are the reported estimate; the plain outer score of each
  candidate is shown beside it but was not used to choose for the estimate. The final
  model: the same rule on the outer cross-validated scores over all labels, each member
  refitted on every label. Why a vote: candidates often differ by less than the spread
  over folds, so the single best of an inner split is partly luck; the vote of the few
  best is steadier (README, accuracy table).
- Learning curve: the same outer folds; for each number of labelled cells per class, that
  many training cells per class are drawn at random from each fold's training part.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from engine.errors import EngineError
from engine.probes.classifiers import ENSEMBLE, fit_probe
from engine.probes.features import PARTS, FeatureSet
from engine.probes.folds import SpatialFolds, ValidationImpossible, spatial_folds
from engine.probes.metrics import FoldScores

INNER_FOLDS = 5
VOTE = 5  # at most this many candidates in auto's soft vote
CURVE_SIZES = (5, 10, 20, 50, 100, 200, 500, 1000)


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Candidate:
    classifier: str
    features: str

    @property
    def name(self) -> str:
        return f"{self.classifier} on {self.features}"

    @property
    def members(self) -> tuple["Candidate", ...]:
        return (self,)


@dataclass(frozen=True)
class Vote:
    """Candidates whose averaged probabilities decide (engine.probes.classifiers.ensemble)."""

    members: tuple[Candidate, ...]
    classifier = ENSEMBLE

    @property
    def name(self) -> str:
        return "soft vote of " + " + ".join(m.name for m in self.members)

    @property
    def features(self) -> str:
        """The union of the members' feature sets: what the vote reads."""
        parts = {p for m in self.members for p in FeatureSet.parse(m.features).parts}
        return FeatureSet(tuple(p for p in PARTS if p in parts)).name



def capped(indices: np.ndarray, y: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` random samples per class among ``indices`` (None: all)."""
    if not cap:
        return indices
    keep = []
    for k in np.unique(y[indices]):
        of_class = indices[y[indices] == k]
        keep.append(of_class if of_class.size <= cap else rng.choice(of_class, cap, replace=False))
    return np.sort(np.concatenate(keep))


@dataclass
class Setup:
    """What every fit of a validation run shares."""

    features: dict[str, np.ndarray]  # feature set name -> (N, D)
    y: np.ndarray
    class_names: list[str]
    config: Any  # engine.probes.classifiers.ProbeConfig; its kind is replaced by each candidate's
    max_per_class: int | None = None  # cap on training cells per class and fit (speed; documented)
    seed: int = 0

    def fit_members(self, choice: Candidate | Vote, picked: np.ndarray) -> list:
        """Each member of ``choice`` fitted on the samples ``picked`` (indices)."""
        return [fit_probe(self.features[m.features][picked], self.y[picked], len(self.class_names),
                          replace(self.config, kind=m.classifier)) for m in choice.members]

    def fit_proba(self, choice: Candidate | Vote, train: np.ndarray, test: np.ndarray,
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """Probabilities at ``test`` of ``choice`` fitted on ``train`` (masks; a vote: the members' mean)."""
        rng = rng or np.random.default_rng(self.seed)
        picked = capped(np.flatnonzero(train), self.y, self.max_per_class, rng)
        models = self.fit_members(choice, picked)
        return np.mean([model.predict_proba(self.features[m.features][test])
                        for model, m in zip(models, choice.members)], axis=0)

    def fit_predict(self, choice: Candidate | Vote, train: np.ndarray, test: np.ndarray,
                    rng: np.random.Generator | None = None) -> np.ndarray:
        return self.fit_proba(choice, train, test, rng).argmax(-1)


def cross_validate(setup: Setup, candidates: Sequence[Candidate], folds: SpatialFolds, reporter=None,
                   probabilities: dict[tuple[Candidate, int], np.ndarray] | None = None) -> dict[Candidate, FoldScores]:
    """Every candidate on every fold; each (candidate, fold)'s test probabilities go into
    ``probabilities`` when given."""
    scores = {c: FoldScores() for c in candidates}
    for fold in range(folds.n_folds):
        train, test = folds.train[fold], folds.test(fold)
        if not test.any() or not train.any():
            continue
        for candidate in candidates:
            proba = setup.fit_proba(candidate, train, test, np.random.default_rng(setup.seed + fold))
            scores[candidate].add(setup.y[test], proba.argmax(-1), setup.class_names)
            if probabilities is not None:
                probabilities[candidate, fold] = proba
        if reporter is not None:
            reporter.progress(100.0 * (fold + 1) / folds.n_folds, f"cross-validation fold {fold + 1}/{folds.n_folds}")
    return scores


def best(scores: dict[Candidate, FoldScores], size: int = 1) -> Candidate | Vote:
    """The candidate with the highest mean macro-F1 or, with ``size`` > 1, the vote of the highest
    ``size`` among those within one standard deviation over folds of the best (a candidate clearly
    worse than the best would only dilute it); ties go to the earlier candidate (the grid's order:
    simpler first)."""
    order = list(scores)
    ranked = sorted((c for c in scores if scores[c].macro_f1), key=lambda c: (-scores[c].mean_f1, order.index(c)))
    if not ranked:
        return order[0]
    floor = scores[ranked[0]].mean_f1 - float(np.std(scores[ranked[0]].macro_f1))
    kept = [c for c in ranked[:size] if scores[c].mean_f1 >= floor]
    return kept[0] if len(kept) == 1 else Vote(tuple(kept))


@dataclass
class Selection:
    candidates: dict[Candidate, FoldScores]  # outer cross-validation of each candidate
    nested: FoldScores  # the selection procedure itself, scored on outer folds it did not see
    chosen_per_fold: list[Candidate | Vote]
    inner_folds: list[int]  # inner folds used per outer fold (0: could not split, the first candidate)
    final: Candidate | Vote  # the best outer cross-validated candidate(s): the model fitted on all labels

    def table(self) -> list[dict[str, Any]]:
        return [{"candidate": c.name, "classifier": c.classifier, "features": c.features, **s.summary(),
                 "chosen": c in self.final.members} for c, s in self.candidates.items() if s.macro_f1]


def nested_selection(setup: Setup, candidates: Sequence[Candidate], folds: SpatialFolds, units: np.ndarray,
                     rows: np.ndarray, cols: np.ndarray, reporter=None) -> Selection:
    """Choose among ``candidates`` without leaking (module docstring)."""
    if not candidates:
        raise EngineError("Automatic selection needs at least one candidate classifier x feature set.")
    outer_proba: dict[tuple[Candidate, int], np.ndarray] = {}
    outer = cross_validate(setup, candidates, folds, probabilities=outer_proba)
    nested, chosen, inner_counts = FoldScores(), [], []
    for fold in range(folds.n_folds):
        train, test = folds.train[fold], folds.test(fold)
        try:
            inner = spatial_folds(setup.y[train], units[train], rows[train], cols[train], INNER_FOLDS,
                                  folds.buffer_cells, setup.seed + 1 + fold)
        except ValidationImpossible:
            pick, count = candidates[0], 0
        else:
            sub = Setup({k: v[train] for k, v in setup.features.items()}, setup.y[train], setup.class_names,
                        setup.config, setup.max_per_class, setup.seed)
            pick, count = best(cross_validate(sub, candidates, inner), VOTE), inner.n_folds
        chosen.append(pick)
        inner_counts.append(count)
        # The pick's members were fitted on this very training part (same draw) by the outer run.
        proba = np.mean([outer_proba[m, fold] for m in pick.members], axis=0)
        nested.add(setup.y[test], proba.argmax(-1), setup.class_names)
        if reporter is not None:
            reporter.progress(100.0 * (fold + 1) / folds.n_folds, f"nested selection, outer fold {fold + 1}/{folds.n_folds}")
    return Selection(outer, nested, chosen, inner_counts, best(outer, VOTE))


def learning_curve(setup: Setup, candidate: Candidate | Vote, folds: SpatialFolds,
                   sizes: Sequence[int] = CURVE_SIZES) -> list[dict[str, Any]]:
    """Scores against the number of training cells per class (module docstring), on the same folds;
    the last point uses every training cell."""
    largest = max(int(np.bincount(setup.y[folds.train[f]]).max()) for f in range(folds.n_folds))
    largest = min(largest, setup.max_per_class or largest)  # the cap every other fit runs under
    points = [n for n in sizes if n < largest] + [largest]
    curve = []
    for n in points:
        scores = FoldScores()
        for fold in range(folds.n_folds):
            rng = np.random.default_rng(setup.seed + 100 + fold)
            train = np.zeros(setup.y.size, bool)
            train[capped(np.flatnonzero(folds.train[fold]), setup.y, n, rng)] = True
            limited = replace(setup, max_per_class=None)
            scores.add(setup.y[folds.test(fold)], limited.fit_predict(candidate, train, folds.test(fold), rng),
                       setup.class_names)
        curve.append({"cells_per_class": n, "all": n == largest, **scores.summary()})
    return curve
