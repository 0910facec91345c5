"""Fitting a probe honestly: spatial folds, the classifier x feature-set choice, the learning curve,
and the final fit on every label (the rules are engine.probes.folds and engine.probes.selection).

``fit_honestly`` takes every candidate feature set as a matrix over the same labelled cells.
A fixed classifier on one feature set is scored by buffered blocked cross-validation; with
``auto`` (or several feature sets) the choice is nested (engine.probes.selection.nested_selection)
and the estimate reported is the nested one; the saved probe is then the soft vote of the best
candidates (engine.probes.classifiers.ensemble). When the labels cannot be split spatially, the probe is
fitted without a score and the outcome says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.probes.classifiers import CLASSIFIERS
from engine.probes.classifiers.ensemble import soft_vote
from engine.probes.features import FeatureSet
from engine.probes.folds import SpatialFolds, ValidationImpossible, spatial_folds
from engine.probes.metrics import FoldScores, classification_metrics
from engine.probes.selection import (
    Candidate,
    FitProgress,
    Selection,
    Setup,
    Vote,
    capped,
    cross_validate,
    learning_curve,
    nested_selection,
)
from engine.runtime.progress import Reporter
from engine.wording import span

AUTO = "auto"
# The fixed grid of ``auto``, simplest first (ties go to the earlier one). Gradient boosting stays a
# choice of its own but is not in the grid: with class weights scikit-learn bins the features by
# weighted quantiles, 20x slower than the extra trees (measured: 17 s vs 1 s a fit on eo-learn's
# 130 features), for no better held-out score there.
AUTO_CLASSIFIERS = ("linear", "mlp", "knn", "random_forest", "extra_trees")
# Training cells per class and fit, in validation and in the saved probe alike (so the estimate is the
# saved probe's): cells of one polygon are alike, and an uncapped dominant class drowns the rare ones
# (eo-learn: extra trees macro-F1 0.39 uncapped vs 0.46 capped, class weights on in both).
MAX_CELLS_PER_CLASS = 500


@dataclass
class FitOutcome:
    classifier: Any  # engine.probes.classifiers.Classifier fitted on every label
    candidate: Candidate | Vote
    folds: SpatialFolds | None
    scores: FoldScores | None  # the reported estimate (nested for a choice), None without validation
    selection: Selection | None
    curve: list[dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)
    validation_rule: str = ""

    def metrics(self, class_names: Sequence[str]) -> dict[str, Any] | None:
        """Pooled held-out metrics (engine.probes.metrics.classification_metrics) with the spread over folds."""
        if self.scores is None:
            return None
        metrics = classification_metrics(self.scores.confusion, class_names)
        metrics["folds"] = self.scores.summary()
        return metrics


def candidate_grid(classifier: str, feature_sets: Sequence[str]) -> list[Candidate]:
    kinds = AUTO_CLASSIFIERS if classifier == AUTO else (classifier,)
    return [Candidate(kind, features) for features in feature_sets for kind in kinds]


@dataclass(frozen=True)
class FitSettings:
    """How a probe is validated, chosen and fitted (fit_honestly)."""

    config: Any  # engine.probes.classifiers.ProbeConfig; with auto, each candidate replaces its kind
    classifier: str = "linear"  # a kind of engine.probes.classifiers, or auto
    feature_sets: tuple[str, ...] = ("embeddings",)
    folds: int = 5
    buffer: int = 1  # cells around each test cell left out of that fold's training
    seed: int = 0
    learning_curve: bool = True
    max_per_class: int | None = MAX_CELLS_PER_CLASS


def fit_honestly(
    features: dict[str, np.ndarray],
    y: np.ndarray,
    units: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    class_names: Sequence[str],
    settings: FitSettings,
    rule: str = "",
    reporter: Reporter | None = None,
    columns: Callable[[str], Sequence[str]] | None = None,
) -> FitOutcome:
    """Validate, choose (when asked), draw the learning curve, then fit on every label (at most
    ``settings.max_per_class`` per class, as in validation). ``columns``: the column names of a feature set
    (engine.probes.features.combine's record), which place a vote's members on the union they read."""
    reporter = reporter or Reporter()
    names = list(class_names)
    seed, max_per_class = settings.seed, settings.max_per_class
    candidates = candidate_grid(settings.classifier, list(features))
    setup = Setup(features, np.asarray(y), names, settings.config, max_per_class, seed)
    notes = []
    try:
        folds = spatial_folds(y, units, rows, cols, settings.folds, settings.buffer, seed, rule)
    except ValidationImpossible as exc:
        folds = None
        notes.append(str(exc))
        reporter.log(str(exc), "warning")
    selection, scores, points = None, None, None
    outer: dict = {}  # (candidate, fold) -> test probabilities of the outer fits, for the learning curve
    if folds is None:
        chosen = candidates[0]
        if len(candidates) > 1:
            notes.append(f"Without validation nothing can be chosen: the first candidate ({chosen.name}) is fitted.")
    elif len(candidates) == 1:
        chosen = candidates[0]
        reporter.log(f"Cross-validating {chosen.name} on {folds.n_folds} spatial folds")
        scores = cross_validate(setup, candidates, folds, reporter=reporter, probabilities=outer)[chosen]
    else:
        reporter.log(
            f"Choosing among {len(candidates)} candidates (classifier x feature set) by nested spatial "
            f"cross-validation ({folds.n_folds} outer folds)"
        )
        selection = nested_selection(setup, candidates, folds, units, rows, cols, reporter)
        chosen, scores, outer = selection.final, selection.nested, selection.outer_probabilities
        picks = ", ".join(sorted({c.name for c in selection.chosen_per_fold}))
        notes.append(
            f"Chosen for the saved probe: {chosen.name} (best outer cross-validated macro-F1). The figures "
            f"above are the nested estimate of the choosing itself: in each outer fold the choice ({picks}) "
            f"was made on {span(selection.inner_folds)} inner folds of its "
            "training part only."
        )
    if folds is not None and settings.learning_curve:
        reporter.log("Learning curve")
        points = learning_curve(setup, chosen, folds, reporter=reporter, outer=outer)
    if folds is not None and folds.unvalidated:
        notes.append(
            "Not validated (all their labels lie in one polygon or block, kept for training): "
            + ", ".join(names[k] for k in folds.unvalidated)
            + "."
        )
    picked = capped(np.arange(len(y)), np.asarray(y), max_per_class, np.random.default_rng(seed))
    reporter.log(f"Fitting {chosen.name} on {len(picked)} labelled cells")
    with FitProgress(reporter, 1).fit(f"the saved probe on {len(picked)} labelled cells"):
        models = setup.fit_members(chosen, picked)
    if isinstance(chosen, Vote):
        if columns is None:
            raise EngineError("A soft vote needs the feature sets' column names to be saved.")
        final = soft_vote(models, [columns(m.features) for m in chosen.members], columns(chosen.features))
    else:
        final = models[0]
    return FitOutcome(final, chosen, folds, scores, selection, points, notes, folds.rule if folds is not None else rule)


def check_feature_request(classifier: str, feature_sets: Sequence[str]) -> None:
    """Clear errors for an unknown classifier or feature set, before any work."""
    if classifier != AUTO and classifier not in CLASSIFIERS:
        raise EngineError(f"Unknown classifier {classifier!r}: use {AUTO} or one of {', '.join(CLASSIFIERS)}.")
    if not feature_sets:
        raise EngineError("Give at least one feature set (e.g. embeddings).")
    for name in feature_sets:
        FeatureSet.parse(name)
