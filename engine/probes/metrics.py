"""Classification metrics of held-out predictions: confusion matrix, accuracy, F1, and their spread over folds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_metrics(cm: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Overall accuracy, macro-F1 (over classes that are true or predicted at least once), per-class figures."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    active = (support > 0) | (predicted > 0)
    total = cm.sum()
    return {
        "overall_accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1[active].mean()) if active.any() else float("nan"),
        "n_samples": int(total),
        "per_class": {
            name: {
                "f1": float(f1[k]),
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


@dataclass
class FoldScores:
    macro_f1: list[float] = field(default_factory=list)
    overall_accuracy: list[float] = field(default_factory=list)
    confusion: np.ndarray | None = None  # pooled over folds (rows true, columns predicted)

    def add(self, truth: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> None:
        cm = confusion_matrix(truth, predicted, len(class_names))
        metrics = classification_metrics(cm, class_names)
        self.macro_f1.append(metrics["macro_f1"])
        self.overall_accuracy.append(metrics["overall_accuracy"])
        self.confusion = cm if self.confusion is None else self.confusion + cm

    def summary(self) -> dict[str, Any]:
        def spread(values):
            return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": [float(v) for v in values]}

        return {"macro_f1": spread(self.macro_f1), "overall_accuracy": spread(self.overall_accuracy)}

    @property
    def mean_f1(self) -> float:
        return float(np.mean(self.macro_f1)) if self.macro_f1 else float("nan")
