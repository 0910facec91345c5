"""The torch probes: a multinomial logistic regression (one linear layer) or a small MLP.

The probe standardizes each channel (statistics of the training cells), then applies its
layer(s). Probes on dense (per-sub-patch) features first normalise each vector with a
LayerNorm: with the standardization as the LayerNorm's affine part, the linear probe is
then the dense segmentation head (engine.models.heads.DenseSegmentationHead: LayerNorm +
linear per sub-patch). Fitting minimises class-weighted cross-entropy plus an L2 penalty
on the weights.

A fit runs on one torch thread whatever the engine's count: its operations (a few thousand
cells, the cap per class) are too small to split, and on cores that other programs keep busy
every split operation waits for a descheduled thread (eo-learn, a linear fit on 1507 cells:
8-21 s on 2 threads at load 6, 0.3 s on one; 0.46 s on 2 at load 0.8). It also makes the
fitted probe the same whatever the thread count the load chose (summation order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.probes.classifiers.registry import ProbeConfig
from engine.runtime.progress import report_within
from engine.runtime.threads import torch_threads


class Probe(nn.Module):
    """[LayerNorm +] standardization + linear layer or MLP: (..., D) embeddings -> (..., K) logits."""

    def __init__(self, in_dim: int, n_classes: int, kind: str = "linear", hidden: int = 128, layer_norm: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if kind == "linear":
            self.net = nn.Linear(in_dim, n_classes)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, n_classes))
        self.kind, self.in_dim, self.n_classes, self.hidden = kind, in_dim, n_classes, hidden
        self.layer_norm = layer_norm

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """The vectors the standardization sees: LayerNorm-ed (no affine) for a dense probe."""
        return F.layer_norm(x, (self.in_dim,)) if self.layer_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((self.normalized(x) - self.mean) / self.std)

    def weight_penalty(self) -> torch.Tensor:
        return sum(m.weight.square().sum() for m in self.modules() if isinstance(m, nn.Linear))

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | torch.Tensor, batch: int = 65536) -> np.ndarray:
        x = torch.as_tensor(x, dtype=torch.float32)
        return torch.cat([self(x[i : i + batch]).softmax(-1) for i in range(0, len(x), batch)]).numpy()

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.predict_proba(x).argmax(-1)

    def architecture(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_dim": self.in_dim,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "layer_norm": self.layer_norm,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().contiguous().cpu().numpy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> Probe:
        probe = cls(
            architecture["in_dim"],
            architecture["n_classes"],
            architecture["kind"],
            architecture["hidden"],
            architecture.get("layer_norm", False),
        )
        probe.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        return probe.eval()


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (n / (K * n_k)); classes absent from y get weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)


def fit_neural_probe(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig) -> Probe:
    """The torch probe (linear or MLP) fitted on one thread (module docstring); inputs already
    checked by fit_classifier."""
    with torch_threads(1):
        return _fit_neural_probe(x, y, n_classes, config)


def _fit_neural_probe(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig) -> Probe:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    torch.manual_seed(config.seed)
    probe = Probe(x.shape[1], n_classes, config.kind, config.hidden, config.layer_norm)
    normalized = probe.normalized(x)
    std = normalized.std(0, unbiased=False)
    probe.mean.copy_(normalized.mean(0))
    probe.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))  # constant channels stay as they are
    weights = class_weights(y_t.numpy(), n_classes) if config.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)

    def objective() -> torch.Tensor:
        return loss_fn(probe(x), y_t) + config.l2 * probe.weight_penalty()

    if config.optimizer == "lbfgs":
        max_eval = config.epochs * 5 // 4  # LBFGS's own default: its bound on evaluations
        optimizer = torch.optim.LBFGS(
            probe.parameters(),
            lr=1.0,
            max_iter=config.epochs,
            max_eval=max_eval,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
        )
        evaluations = 0

        def closure():
            nonlocal evaluations
            evaluations += 1
            report_within(evaluations / max_eval)  # an upper bound: a converging fit ends sooner
            optimizer.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        optimizer.step(closure)
    else:
        optimizer = torch.optim.Adam(probe.parameters(), lr=config.learning_rate)
        generator = torch.Generator().manual_seed(config.seed)
        batch = 256
        for epoch in range(config.epochs):
            report_within(epoch / config.epochs)
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), batch):
                idx = order[i : i + batch]
                optimizer.zero_grad()
                loss = loss_fn(probe(x[idx]), y_t[idx]) + config.l2 * probe.weight_penalty()
                loss.backward()
                optimizer.step()
    probe.eval()
    return probe
