"""The registry of classifier kinds (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from engine.errors import EngineError


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
    scale_free: bool  # insensitive to per-channel scaling (tree ensembles)


def _torch_fit(x, y, n_classes, config):
    from engine.probe import fit_neural_probe

    return fit_neural_probe(x, y, n_classes, config)


def _torch_rebuild(architecture, arrays):
    from engine.probe import Probe

    return Probe.from_arrays(architecture, arrays)


def _knn_fit(x, y, n_classes, config):
    from engine.classifiers.knn import fit_knn

    return fit_knn(x, y, n_classes, config)


def _knn_rebuild(architecture, arrays):
    from engine.classifiers.knn import KNNClassifier

    return KNNClassifier.from_arrays(architecture, arrays)


def _forest_fit(x, y, n_classes, config):
    from engine.classifiers.trees import fit_random_forest

    return fit_random_forest(x, y, n_classes, config)


def _forest_rebuild(architecture, arrays):
    from engine.classifiers.trees import ForestClassifier

    return ForestClassifier.from_arrays(architecture, arrays)


def _boosting_fit(x, y, n_classes, config):
    from engine.classifiers.trees import fit_gradient_boosting

    return fit_gradient_boosting(x, y, n_classes, config)


def _boosting_rebuild(architecture, arrays):
    from engine.classifiers.trees import BoostingClassifier

    return BoostingClassifier.from_arrays(architecture, arrays)


CLASSIFIERS: dict[str, ClassifierKind] = {k.name: k for k in (
    ClassifierKind("linear", "multinomial logistic regression (one linear layer, torch)", _torch_fit, _torch_rebuild, False),
    ClassifierKind("mlp", "small MLP (one hidden GELU layer, torch)", _torch_fit, _torch_rebuild, False),
    ClassifierKind("knn", "k nearest neighbours on standardized features, class-weighted votes", _knn_fit,
                   _knn_rebuild, False),
    ClassifierKind("random_forest", "random forest (scikit-learn)", _forest_fit, _forest_rebuild, True),
    ClassifierKind("gradient_boosting", "histogram gradient boosting (scikit-learn)", _boosting_fit,
                   _boosting_rebuild, True),
)}


def classifier_kind(name: str) -> ClassifierKind:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise EngineError(f"Unknown classifier {name!r}: use one of {', '.join(CLASSIFIERS)}.") from None


def fit_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> Classifier:
    """Fit the kind ``config.kind`` (an engine.probe.ProbeConfig) on (N, D) features and N class indices."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise EngineError(f"Probe fitting needs (N, D) features and N labels, got {tuple(x.shape)} and {len(y)}.")
    if not np.isfinite(x).all():
        raise EngineError("Some features at labelled cells are NaN or infinite (nodata under the labels?): "
                          "mask them out or move the labels.")
    return classifier_kind(config.kind).fit(x, y, n_classes, config)


def rebuild_classifier(architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> Classifier:
    return classifier_kind(architecture.get("kind", "")).rebuild(architecture, arrays)
