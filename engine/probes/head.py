"""A fitted probe run by tiled inference as a head (engine.mapping)."""

from __future__ import annotations

import torch
from torch import nn

from engine.mapping.levels import level
from engine.models.heads import HeadConfig
from engine.probes.classifiers import Classifier


class ProbeHead(nn.Module):
    """A probe seen as a head (the interface of engine.models.heads.LinearHead) by tiled inference:
    logits over the last axis of the embeddings of its ``level``: patch (B, Gh, Gw, D), sub-patch
    (B, Hs, Ws, 2D) or window (B, D). Classifiers outside torch (kNN, trees) run on the vectors as
    numpy and give log-probabilities as logits (softmax gives them back)."""

    class_axis = -1

    def __init__(self, probe: Classifier, level_name: str):
        super().__init__()
        self.probe = probe
        self.level = level(level_name).name
        self.config = HeadConfig("patch", probe.in_dim, probe.n_classes)

    def read(self, features) -> torch.Tensor:
        return level(self.level).select(features)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        if isinstance(self.probe, nn.Module):
            return self.probe(patch)  # standardization and layers act on the last axis
        vectors = patch.reshape(-1, patch.shape[-1]).float().cpu().numpy()
        proba = torch.as_tensor(self.probe.predict_proba(vectors), dtype=torch.float32)
        return proba.clamp_min(1e-12).log().reshape(*patch.shape[:-1], self.probe.n_classes).to(patch.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)
