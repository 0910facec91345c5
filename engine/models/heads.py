"""Task heads on top of a model's features: one registry, keyed by ``HeadConfig.kind``.

Every head is a linear layer over the last (feature) axis; what differs is which
features it reads and how its logits are laid out:
- "classification": the tile vector (B, D) -> (B, K);
- "patch": the patch grid (B, Gh, Gw, D) -> (B, Gh, Gw, K);
- "dense": AnySat's sub-patch grid (B, Hs, Ws, 2D) -> (B, K, H, W), LayerNorm first
  (each vector joins a patch token and a sub-patch token of different scales), logits
  resized bilinearly to the label raster's resolution when one is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.mapping.levels import level
from engine.models.base import EOModel, Features

HEAD_KINDS = ("classification", "patch", "dense")


@dataclass(frozen=True)
class HeadConfig:
    kind: str  # one of HEAD_KINDS
    embed_dim: int  # width of the features the head reads (2 x the model's width for "dense")
    n_classes: int
    multilabel: bool = False  # sigmoid per class (BCE) instead of softmax (cross-entropy)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise EngineError(f"Unknown head kind {self.kind!r}: choose one of {', '.join(HEAD_KINDS)}.")
        if self.n_classes < 1:
            raise EngineError(f"A head needs at least one class, got {self.n_classes}.")
        if self.kind == "dense" and self.multilabel:
            raise EngineError("A dense segmentation head gives one class per pixel: it cannot be multi-label.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        return cls(**data)


# The embedding level (engine.mapping.levels) whose features a head of each kind reads.
HEAD_LEVELS = {"classification": "tile", "patch": "patch", "dense": "dense"}


class LinearHead(nn.Module):
    """Features (..., D) -> logits (..., K) over the last axis (tile vectors or patch grids).

    The interface every head offers (checkpoint heads here, probes in engine.probes):
    ``level`` and ``read(features)``: the features it reads; ``class_axis``: where the
    classes lie in its logits; ``probabilities(logits)``.
    """

    class_axis = -1

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.level = HEAD_LEVELS[config.kind]
        self.norm = nn.LayerNorm(config.embed_dim) if config.kind == "dense" else nn.Identity()
        self.linear = nn.Linear(config.embed_dim, config.n_classes)

    def read(self, features: Features) -> Tensor:
        return level(self.level).select(features)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.norm(features))

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid() if self.config.multilabel else logits.softmax(dim=self.class_axis)


# The tile and patch heads are the same layer applied to different features.
PatchHead = LinearHead


class DenseSegmentationHead(LinearHead):
    """(B, Hs, Ws, C) dense features -> (B, K, H, W) logits, usable as a probe or fine-tuned."""

    class_axis = 1

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__(HeadConfig("dense", in_dim, n_classes))
        self.in_dim, self.n_classes = in_dim, n_classes

    def forward(self, dense: Tensor, output_size: tuple[int, int] | None = None) -> Tensor:
        if dense.ndim != 4 or dense.shape[-1] != self.in_dim:
            raise EngineError(
                f"This segmentation head reads dense features (B, Hs, Ws, {self.in_dim}) per sub-patch, got "
                f"{tuple(dense.shape)}: it needs an AnySat model's dense output (Features.dense)."
            )
        logits = rearrange(super().forward(dense), "b h w k -> b k h w")
        if output_size is not None and tuple(output_size) != tuple(logits.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)
        return logits


def build_head(config: HeadConfig) -> LinearHead:
    if config.kind == "dense":
        return DenseSegmentationHead(config.embed_dim, config.n_classes)
    return LinearHead(config)


def head_input_width(kind: str, model: EOModel) -> int:
    """Width of the features a head of ``kind`` reads from ``model``; clear error if it has none."""
    if kind != "dense":
        return model.embed_dim
    if not model.has_dense_features:
        raise EngineError(
            f"A dense segmentation head needs per-sub-patch features, which only AnySat models give; "
            f"{type(model).__name__} gives tile and patch features only: use a patch head or an anysat-* model."
        )
    return 2 * model.embed_dim
