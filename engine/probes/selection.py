"""Honest choice among candidates (classifier x feature set): cross-validation on spatial folds
(engine.probes.folds), nested selection, learning curves.

- Figures: mean and standard deviation over the folds, plus the pooled confusion matrix.
- Selection (``auto``): nested. For each outer fold, every candidate (classifier x
  feature set) is scored by an inner cross-validation on the outer training part only,
  whose folds are the other outer folds: inner fold g of outer fold f trains on the cells
  both folds' training parts keep and is scored on fold g's test cells that f trains on.
  That training set is the same for (f, g) and (g, f), so one fit serves both: F(F-1)/2
  inner fits per candidate instead of F x 5 on inner folds drawn afresh in each outer
  training part, as before (the choice on all labels depends only on the outer scores and
  is unchanged by this). The ``VOTE`` best by inner macro-F1 -- those within one standard deviation
  over inner folds of the best -- are refitted on the outer training part, and their
  averaged probabilities (a soft vote) are scored on the outer test fold. The outer
  scores of that procedure are the reported estimate; the plain outer score of each
  candidate is shown beside it but was not used to choose for the estimate. The final
  model: the same rule on the outer cross-validated scores over all labels, each member
  refitted on every label. Why a vote: candidates often differ by less than the spread
  over folds, so the single best of an inner split is partly luck; the vote of the few
  best is steadier (README, accuracy table).
- Learning curve: the same outer folds; for each number of labelled cells per class, that
  many training cells per class are drawn at random from each fold's training part. Its
  last point (every training cell, under the cap) draws as the outer cross-validation did,
  so the outer fits of the chosen candidate serve it when they are at hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.probes.classifiers import ENSEMBLE, fit_probe
from engine.probes.features import PARTS, FeatureSet
from engine.probes.folds import SpatialFolds
from engine.probes.metrics import FoldScores
from engine.runtime.progress import Reporter, StepCounter, share_of_step

VOTE = 5  # at most this many candidates in auto's soft vote
# Steps of about x4-5: with fit-probe's cap of 500 per class, 3 points fitted and the last from the
# outer fits (7 points before, 6 fitted: the curve was then twice the selection's fits).
CURVE_SIZES = (10, 50, 200, 1000)


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Candidate:
    classifier: str
    features: str

    @property
    def name(self) -> str:
        return f"{self.classifier} on {self.features}"

    @property
    def members(self) -> tuple[Candidate, ...]:
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
        """The union of the members' feature sets: what the vote reads (one modality only when every
        member reads that one alone)."""
        sets = [FeatureSet.parse(m.features) for m in self.members]
        parts = {p for s in sets for p in s.parts}
        scopes = {s.modality for s in sets}
        return FeatureSet(tuple(p for p in PARTS if p in parts), scopes.pop() if len(scopes) == 1 else None).name


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
        """Each member of ``choice`` fitted on the samples ``picked`` (indices); each member's
        progress (report_within) is its share of the whole."""
        models, count = [], len(choice.members)
        for i, m in enumerate(choice.members):
            with share_of_step(i / count, (i + 1) / count):
                models.append(
                    fit_probe(
                        self.features[m.features][picked],
                        self.y[picked],
                        len(self.class_names),
                        replace(self.config, kind=m.classifier),
                    )
                )
        return models

    def fit_proba(
        self, choice: Candidate | Vote, train: np.ndarray, test: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Probabilities at ``test`` of ``choice`` fitted on ``train`` (masks; a vote: the members' mean)."""
        rng = rng or np.random.default_rng(self.seed)
        picked = capped(np.flatnonzero(train), self.y, self.max_per_class, rng)
        models = self.fit_members(choice, picked)
        return np.mean(
            [model.predict_proba(self.features[m.features][test]) for model, m in zip(models, choice.members)], axis=0
        )

    def fit_predict(
        self, choice: Candidate | Vote, train: np.ndarray, test: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        return self.fit_proba(choice, train, test, rng).argmax(-1)


class FitProgress(StepCounter):
    """Progress of a run of fits (fits of one run cost about the same): after each fit, what it was,
    its number and the time left; while one runs, its share done (the classifiers report it)."""

    def __init__(self, reporter, total: int):
        super().__init__(reporter or Reporter(), total, "fit", 0.0, 100.0)

    def label(self, number: int, message: str, within: float | None = None) -> str:
        share = "" if within is None else f" ({within:.0%} done)"
        return f"{message}; fit {number} of {self.total}{share}"

    @contextlib.contextmanager
    def fit(self, what: str) -> Iterator[None]:
        """One fit (and its prediction) runs in this block; counted when it ends."""
        with self.part(what):
            yield
        self.count(1, what)

    def step(self, what: str) -> None:
        """A fit counted without running (nothing to fit)."""
        self.count(1, what)


def cross_validate(
    setup: Setup,
    candidates: Sequence[Candidate],
    folds: SpatialFolds,
    reporter=None,
    probabilities: dict[tuple[Candidate, int], np.ndarray] | None = None,
    progress: FitProgress | None = None,
    stage: str = "cross-validation",
) -> dict[Candidate, FoldScores]:
    """Every candidate on every fold; each (candidate, fold)'s test probabilities go into
    ``probabilities`` when given. Progress after every fit: to ``progress`` (a longer run this
    one is part of, its messages prefixed by ``stage``) or else to ``reporter``."""
    scores = {c: FoldScores() for c in candidates}
    if progress is None:
        progress = FitProgress(reporter, len(candidates) * folds.n_folds)
    for fold in range(folds.n_folds):
        train, test = folds.train[fold], folds.test(fold)
        if not test.any() or not train.any():
            for _ in candidates:
                progress.step(f"{stage}: fold {fold + 1} of {folds.n_folds} has no cells")
            continue
        for k, candidate in enumerate(candidates):
            what = f"{stage}: candidate {k + 1} of {len(candidates)} ({candidate.name}), fold {fold + 1} of {folds.n_folds}"
            with progress.fit(what):
                proba = setup.fit_proba(candidate, train, test, np.random.default_rng(setup.seed + fold))
            scores[candidate].add(setup.y[test], proba.argmax(-1), setup.class_names)
            if probabilities is not None:
                probabilities[candidate, fold] = proba
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
    # (candidate, outer fold) -> test probabilities of the outer fit (the learning curve reuses them)
    outer_probabilities: dict[tuple[Candidate, int], np.ndarray] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "candidate": c.name,
                "classifier": c.classifier,
                "features": c.features,
                **s.summary(),
                "chosen": c in self.final.members,
            }
            for c, s in self.candidates.items()
            if s.macro_f1
        ]


def nested_selection(
    setup: Setup,
    candidates: Sequence[Candidate],
    folds: SpatialFolds,
    units: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    reporter=None,
) -> Selection:
    """Choose among ``candidates`` without leaking (module docstring). ``units``, ``rows`` and
    ``cols`` are accepted for callers that have them; the inner folds come from ``folds``."""
    if not candidates:
        raise EngineError("Automatic selection needs at least one candidate classifier x feature set.")
    n = folds.n_folds
    pairs = [(f, g) for f in range(n) for g in range(f + 1, n)]
    outer_proba: dict[tuple[Candidate, int], np.ndarray] = {}
    progress = FitProgress(reporter, len(candidates) * (n + len(pairs)))
    outer = cross_validate(
        setup, candidates, folds, probabilities=outer_proba, progress=progress, stage="outer cross-validation"
    )
    # Inner fits: one per pair of outer folds, trained where both train, predicting both test folds.
    inner_proba: dict[tuple[Candidate, int, int], np.ndarray] = {}  # (c, f, g): at fold g's test cells f trains on
    for p, (f, g) in enumerate(pairs):
        train = folds.train[f] & folds.train[g]
        tests = {f: folds.test(g) & folds.train[f], g: folds.test(f) & folds.train[g]}  # outer fold -> its inner test
        union = tests[f] | tests[g]
        for k, candidate in enumerate(candidates):
            what = (
                f"nested selection: candidate {k + 1} of {len(candidates)} ({candidate.name}), "
                f"inner fit {p + 1} of {len(pairs)} (outer folds {f + 1} and {g + 1} held out)"
            )
            if not (train.any() and union.any()):
                progress.step(what)
                continue
            with progress.fit(what):
                proba = setup.fit_proba(candidate, train, union, np.random.default_rng(setup.seed + 1000 + p))
            at = np.cumsum(union) - 1  # row of each cell in proba
            for outer_fold, inner_fold in ((f, g), (g, f)):
                if tests[outer_fold].any():
                    inner_proba[candidate, outer_fold, inner_fold] = proba[at[tests[outer_fold]]]
    nested, chosen, inner_counts = FoldScores(), [], []
    for fold in range(n):
        test = folds.test(fold)
        inner_of = [g for g in range(n) if g != fold and (candidates[0], fold, g) in inner_proba]
        if inner_of:
            scores = {c: FoldScores() for c in candidates}
            for g in inner_of:
                truth = setup.y[folds.test(g) & folds.train[fold]]
                for c in candidates:
                    scores[c].add(truth, inner_proba[c, fold, g].argmax(-1), setup.class_names)
            pick = best(scores, VOTE)
        else:
            pick = candidates[0]
        chosen.append(pick)
        inner_counts.append(len(inner_of))
        # The pick's members were fitted on this very training part (same draw) by the outer run.
        if all((m, fold) in outer_proba for m in pick.members):
            proba = np.mean([outer_proba[m, fold] for m in pick.members], axis=0)
            nested.add(setup.y[test], proba.argmax(-1), setup.class_names)
    return Selection(outer, nested, chosen, inner_counts, best(outer, VOTE), outer_proba)


def learning_curve(
    setup: Setup,
    candidate: Candidate | Vote,
    folds: SpatialFolds,
    sizes: Sequence[int] = CURVE_SIZES,
    reporter=None,
    outer: dict[tuple[Candidate, int], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Scores against the number of training cells per class (module docstring), on the same folds;
    the last point uses every training cell. ``outer``: test probabilities of outer fits (as
    cross_validate collects them), which replace the last point's fits where they hold every member."""
    outer = outer or {}
    largest = max(int(np.bincount(setup.y[folds.train[f]]).max()) for f in range(folds.n_folds))
    largest = min(largest, setup.max_per_class or largest)  # the cap every other fit runs under
    points = [n for n in sizes if n < largest] + [largest]
    progress = FitProgress(reporter, len(points) * folds.n_folds)
    curve = []
    for i, n in enumerate(points):
        scores = FoldScores()
        last = i == len(points) - 1
        for fold in range(folds.n_folds):
            test = folds.test(fold)
            what = f"learning curve: point {i + 1} of {len(points)} ({n} cells per class), fold {fold + 1} of {folds.n_folds}"
            if last and all((m, fold) in outer for m in candidate.members):
                predicted = np.mean([outer[m, fold] for m in candidate.members], axis=0).argmax(-1)
                progress.step(what)
            else:
                # the last point draws as cross_validate does (the same cells as the outer fits)
                rng = np.random.default_rng(setup.seed + (0 if last else 100) + fold)
                train = np.zeros(setup.y.size, bool)
                train[capped(np.flatnonzero(folds.train[fold]), setup.y, n, rng)] = True
                with progress.fit(what):
                    predicted = replace(setup, max_per_class=None).fit_predict(candidate, train, test, rng)
            scores.add(setup.y[test], predicted, setup.class_names)
        curve.append({"cells_per_class": n, "all": n == largest, **scores.summary()})
    return curve
