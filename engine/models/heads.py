"""Task heads on top of a model's features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from engine.errors import EngineError

HEAD_KINDS = ("classification", "patch")


@dataclass(frozen=True)
class HeadConfig:
    kind: str  # "classification": tile vector -> logits; "patch": patch grid -> per-patch logits
    embed_dim: int
    n_classes: int
    multilabel: bool = False  # sigmoid per class (BCE) instead of softmax (cross-entropy)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise EngineError(f"Unknown head kind {self.kind!r}: choose one of {', '.join(HEAD_KINDS)}.")
        if self.n_classes < 1:
            raise EngineError(f"A head needs at least one class, got {self.n_classes}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HeadConfig":
        return cls(**data)


class ClassificationHead(nn.Module):
    """Tile vector (B, D) -> logits (B, K); multi-label or multi-class per ``config.multilabel``."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.embed_dim, config.n_classes)

    def forward(self, tile: Tensor) -> Tensor:
        return self.linear(tile)

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid() if self.config.multilabel else logits.softmax(dim=-1)


class PatchHead(nn.Module):
    """Patch grid (B, Gh, Gw, D) -> per-patch logits (B, Gh, Gw, K)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.embed_dim, config.n_classes)

    def forward(self, patch: Tensor) -> Tensor:
        return self.linear(patch)

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid() if self.config.multilabel else logits.softmax(dim=-1)


def build_head(config: HeadConfig) -> nn.Module:
    return ClassificationHead(config) if config.kind == "classification" else PatchHead(config)
