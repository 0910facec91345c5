"""The registry of classifier kinds (see the package docstring)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.errors import EngineError

ENSEMBLE = "ensemble"  # the soft vote auto keeps (ensemble.py): stored, never fitted directly


class Classifier(Protocol):
    kind: str
    in_dim: int
    n_classes: int

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def architecture(self) -> dict[str, Any]: ...

    def arrays(self) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class ClassifierKind:
    name: str
    description: str
    fit: Callable[..., Classifier]  # (x, y, n_classes, config) -> Classifier
    rebuild: Callable[[dict[str, Any], dict[str, np.ndarray]], Classifier]  # (architecture, arrays)


def _lazy(module: str, attribute: str) -> Callable:
    """``module``'s (dotted) ``attribute``, imported on first call: a kind loads torch or scikit-learn
    only when it is used."""

    def call(*args):
        target = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target(*args)

    return call


CLASSIFIERS: dict[str, ClassifierKind] = {
    k.name: k
    for k in (
        ClassifierKind(
            "linear",
            "multinomial logistic regression (one linear layer, torch)",
            _lazy("engine.probes.classifiers.neural", "fit_neural_probe"),
            _lazy("engine.probes.classifiers.neural", "Probe.from_arrays"),
        ),
        ClassifierKind(
            "mlp",
            "small MLP (one hidden GELU layer, torch)",
            _lazy("engine.probes.classifiers.neural", "fit_neural_probe"),
            _lazy("engine.probes.classifiers.neural", "Probe.from_arrays"),
        ),
        ClassifierKind(
            "knn",
            "k nearest neighbours on standardized features, class-weighted votes",
            _lazy("engine.probes.classifiers.knn", "fit_knn"),
            _lazy("engine.probes.classifiers.knn", "KNNClassifier.from_arrays"),
        ),
        ClassifierKind(
            "random_forest",
            "random forest (scikit-learn)",
            _lazy("engine.probes.classifiers.trees", "fit_random_forest"),
            _lazy("engine.probes.classifiers.trees", "ForestClassifier.from_arrays"),
        ),
        ClassifierKind(
            "extra_trees",
            "extremely randomized trees (scikit-learn)",
            _lazy("engine.probes.classifiers.trees", "fit_extra_trees"),
            _lazy("engine.probes.classifiers.trees", "ForestClassifier.from_arrays"),
        ),
        ClassifierKind(
            "gradient_boosting",
            "histogram gradient boosting (scikit-learn)",
            _lazy("engine.probes.classifiers.trees", "fit_gradient_boosting"),
            _lazy("engine.probes.classifiers.trees", "BoostingClassifier.from_arrays"),
        ),
    )
}


@dataclass(frozen=True)
class ProbeConfig:
    kind: str = "linear"  # a classifier of engine.probes.classifiers.CLASSIFIERS: linear, mlp, knn, random_forest, ...
    optimizer: str = "lbfgs"  # "lbfgs" (full batch) or "adam"
    l2: float = 1e-3  # penalty on the squared weights, per sample
    class_weighting: bool = True  # weight classes by inverse frequency ("balanced")
    hidden: int = 128  # MLP width
    epochs: int = 200  # L-BFGS iterations or Adam epochs
    learning_rate: float = 1e-2  # Adam only
    seed: int = 0
    layer_norm: bool = False  # linear / mlp: LayerNorm each vector first (dense level: the segmentation head)
    neighbours: int = 10  # kNN
    trees: int = 200  # random forest trees / gradient boosting rounds

    def __post_init__(self):
        if self.kind not in CLASSIFIERS:
            raise EngineError(f"Probe kind must be one of {', '.join(CLASSIFIERS)}, got {self.kind!r}.")
        if self.trees < 1 or self.neighbours < 1:
            raise EngineError(f"trees and neighbours must be >= 1, got {self.trees} and {self.neighbours}.")
        if self.optimizer not in ("lbfgs", "adam"):
            raise EngineError(f"Probe optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}.")
        if self.l2 < 0:
            raise EngineError(f"The probe's L2 penalty must be >= 0, got {self.l2}.")
        if self.epochs < 1:
            raise EngineError(f"The probe needs at least one epoch/iteration, got {self.epochs}.")


def classifier_kind(name: str) -> ClassifierKind:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise EngineError(f"Unknown classifier {name!r}: use one of {', '.join(CLASSIFIERS)}.") from None


def fit_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> Classifier:
    """Fit the kind ``config.kind`` (an engine.probes.classifiers.ProbeConfig) on (N, D) features and N class indices."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise EngineError(f"Probe fitting needs (N, D) features and N labels, got {tuple(x.shape)} and {len(y)}.")
    if not np.isfinite(x).all():
        raise EngineError(
            "Some features at labelled cells are NaN or infinite (nodata under the labels?): "
            "mask them out or move the labels."
        )
    return classifier_kind(config.kind).fit(x, y, n_classes, config)


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig = ProbeConfig()) -> Classifier:
    """Fit the classifier ``config.kind`` on features ``x`` (N, D) and class indices ``y`` (N,)."""
    return fit_classifier(x, y, n_classes, config)


# Kinds a probe file may hold beyond the fittable ones: auto's soft vote of fitted candidates.
COMBINED: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], Classifier]] = {
    ENSEMBLE: _lazy("engine.probes.classifiers.ensemble", "EnsembleClassifier.from_arrays"),
}
STORED_KINDS = (*CLASSIFIERS, *COMBINED)


def rebuild_classifier(architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> Classifier:
    kind = architecture.get("kind", "")
    if kind in COMBINED:
        return COMBINED[kind](architecture, arrays)
    return classifier_kind(kind).rebuild(architecture, arrays)
