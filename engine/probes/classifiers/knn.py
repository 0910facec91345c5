"""k nearest neighbours: the training vectors themselves are the model.

Features are standardized with the training cells' statistics (channels of very
different scales, e.g. embeddings next to raw reflectance, would otherwise let one
dominate the distance). Each of the k nearest training vectors votes for its class,
weighted by the class's inverse frequency when class weighting is on, so a dominant
class does not win every neighbourhood by numbers alone.

Predictions run on one torch thread, as the neural probes' fits (engine.probes.classifiers.neural):
a batch's distances to a few thousand training vectors are too small to split, and on loaded cores
split operations wait for descheduled threads (eo-learn, ~2000 test cells: 0.24 s on 2 threads at
load 6, 0.06 s on one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.errors import EngineError
from engine.probes.classifiers.neural import class_weights
from engine.runtime.progress import report_within
from engine.runtime.threads import torch_threads


class KNNClassifier:
    kind = "knn"

    def __init__(
        self,
        train: np.ndarray,
        labels: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        vote_weights: np.ndarray,
        neighbours: int,
    ):
        self.train = np.ascontiguousarray(train, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.vote_weights = np.asarray(vote_weights, np.float32)
        self.neighbours = int(neighbours)
        self.in_dim, self.n_classes = self.train.shape[1], self.vote_weights.size

    def predict_proba(self, x: np.ndarray, batch: int = 2048) -> np.ndarray:
        x = torch.as_tensor((np.asarray(x, np.float32) - self.mean) / self.std)
        train = torch.as_tensor(self.train)
        labels = torch.as_tensor(self.labels)
        weights = torch.as_tensor(self.vote_weights)
        k = min(self.neighbours, len(train))
        out = []
        with torch.inference_mode(), torch_threads(1):
            for i in range(0, len(x), batch):
                report_within(i / len(x))
                nearest = torch.cdist(x[i : i + batch], train).topk(k, largest=False).indices
                votes = torch.zeros(len(nearest), self.n_classes)
                votes.scatter_add_(1, labels[nearest], weights[labels[nearest]])
                out.append(votes / votes.sum(1, keepdim=True).clamp_min(1e-12))
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(-1)

    def architecture(self) -> dict[str, Any]:
        return {"kind": self.kind, "in_dim": self.in_dim, "n_classes": self.n_classes, "neighbours": self.neighbours}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "train": self.train,
            "labels": self.labels,
            "mean": self.mean,
            "std": self.std,
            "vote_weights": self.vote_weights,
        }

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> KNNClassifier:
        model = cls(
            arrays["train"],
            arrays["labels"],
            arrays["mean"],
            arrays["std"],
            arrays["vote_weights"],
            architecture["neighbours"],
        )
        if model.in_dim != architecture["in_dim"] or model.n_classes != architecture["n_classes"]:
            raise ValueError("the stored neighbours do not match the architecture")
        return model


def fit_knn(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> KNNClassifier:
    if config.neighbours < 1:
        raise EngineError(f"kNN needs at least one neighbour, got {config.neighbours}.")
    x = np.asarray(x, np.float32)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)  # constant channels stay as they are
    weights = class_weights(y, n_classes).numpy() if config.class_weighting else np.ones(n_classes, np.float32)
    return KNNClassifier((x - mean) / std, y, mean, std, weights, config.neighbours)
