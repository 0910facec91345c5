"""What a training step minimizes: OmniSat, AnySat or UniverSat pretraining, supervised fine-tuning, probing.

An objective is an nn.Module holding the engine model (``encoder``) and whatever
else it trains (heads, an EMA teacher, a predictor). ``forward(batch)`` returns
the loss and the figures to log; ``after_step`` runs after the optimizer step
(EMA updates). The losses themselves live in the engine (engine.models.losses,
the models' ``pretraining_loss``, engine.models.jepa, engine.models.universat_ssl): nothing is re-implemented
here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.models.base import EOModel
from engine.models.heads import HeadConfig, build_head, head_input_width
from training.config import ExperimentConfig
from training.datasets.common import Batch


@dataclass
class StepOutput:
    loss: Tensor
    logs: dict[str, Tensor]
    logits: Tensor | None = None


class Objective(nn.Module):
    encoder: EOModel

    def forward(self, batch: Batch) -> StepOutput:
        raise NotImplementedError

    def after_step(self, step: int, max_steps: int) -> None:
        """Called after each optimizer step (EMA teachers)."""

    def head(self) -> nn.Module | None:
        return None


class OmniSatPretraining(Objective):
    """Masked multimodal pretraining: patch contrast + reconstruction (OmniSat's own loss code)."""

    def __init__(self, encoder: EOModel, contrastive_weight: float, reconstruction_weight: float):
        super().__init__()
        if not hasattr(encoder, "pretraining_loss"):
            raise EngineError(
                f"Objective 'omnisat' needs an OmniSat model, not {type(encoder).__name__}: use model.preset omnisat-*."
            )
        self.encoder = encoder
        self.weights = {"contrastive": contrastive_weight, "reconstruction": reconstruction_weight}

    def forward(self, batch: Batch) -> StepOutput:
        terms = self.encoder.pretraining_loss(batch.inputs, batch.dates, batch.date_mask)
        reconstruction = sum(v for k, v in terms.items() if k.startswith("reconstruction."))
        loss = self.weights["reconstruction"] * reconstruction
        if "contrastive" in terms:
            loss = loss + self.weights["contrastive"] * terms["contrastive"]
        logs = {k: v.detach() for k, v in terms.items() if k != "loss"}
        return StepOutput(loss, logs)


class AnySatPretraining(Objective):
    """Multimodal JEPA (EMA teacher, predictor) + contrastive: engine.models.jepa.AnySatJEPA."""

    def __init__(self, encoder: EOModel, config: ExperimentConfig):
        super().__init__()
        from engine.models.anysat import AnySat  # lazy: keeps rasterio out of this module
        from engine.models.jepa import AnySatJEPA, JEPAConfig  # lazy: keeps rasterio out of this module

        if not isinstance(encoder, AnySat):
            raise EngineError(
                f"Objective 'anysat' needs an AnySat model, not {type(encoder).__name__}: use model.preset anysat-*."
            )
        p = config.pretrain
        self.jepa = AnySatJEPA(
            encoder,
            JEPAConfig(
                total_steps=config.train.max_steps,
                momentum=(p.ema_start, p.ema_end),
                date_drop=p.date_dropout,
                temperature=p.temperature,
                contrastive_weight=p.contrastive_weight,
            ),
        )

    @property
    def encoder(self) -> EOModel:  # the student; not registered twice (safetensors refuses shared tensors)
        return self.jepa.student

    def forward(self, batch: Batch) -> StepOutput:
        terms = self.jepa(batch.inputs, batch.dates, batch.date_mask, patch_size_m=batch.patch_size_m)
        return StepOutput(terms["loss"], {k: v.detach() for k, v in terms.items() if k != "loss"})

    def after_step(self, step: int, max_steps: int) -> None:
        self.jepa.update_teacher()


class UniverSatPretraining(Objective):
    """UniverSat's released objective (masked latent prediction + cross-sensor contrast):
    engine.models.universat_ssl.UniverSatSSL."""

    def __init__(self, encoder: EOModel, config: ExperimentConfig):
        super().__init__()
        from engine.models.universat import UniverSat  # lazy: keeps rasterio out of this module
        from engine.models.universat_ssl import UniverSatSSL, UniverSatSSLConfig  # lazy: as above

        if not isinstance(encoder, UniverSat):
            raise EngineError(
                f"Objective 'universat' needs a UniverSat model, not {type(encoder).__name__}: use model.preset "
                "universat-*."
            )
        p = config.pretrain
        self.ssl = UniverSatSSL(
            encoder,
            UniverSatSSLConfig(
                hidden_share=p.mask_ratio,
                date_drop=p.date_dropout,
                prediction_temperature=p.temperature,
                contrast_weight=p.contrastive_weight,
            ),
        )

    @property
    def encoder(self) -> EOModel:  # registered once, inside the SSL module
        return self.ssl.model

    def forward(self, batch: Batch) -> StepOutput:
        terms = self.ssl(batch.inputs, batch.dates, batch.date_mask, patch_size_m=batch.patch_size_m)
        return StepOutput(terms["loss"], {k: v.detach() for k, v in terms.items() if k != "loss"})


def segmentation_head_kind(choice: str, encoder: EOModel) -> str:
    """``task.head`` resolved for this encoder: "auto" is dense where the encoder has dense features."""
    if choice == "auto":
        return "dense" if encoder.has_dense_features else "patch"
    if choice == "dense" and not encoder.has_dense_features:
        raise EngineError(
            f"task.head=dense needs per-sub-patch (dense) features, which {type(encoder).__name__} does not give "
            "(only AnySat models do): set task.head=patch, or use model.preset anysat-*."
        )
    return choice


class Supervised(Objective):
    """A head on the encoder's features; BCE (multi-label), CE (multi-class), CE with ignore (segmentation).

    Segmentation reads either the dense sub-patch features (AnySat; the dense head's LayerNorm +
    linear per sub-patch) or the patch features; either way the logits are resized bilinearly
    to the label raster. With ``freeze_encoder`` the encoder is fixed (evaluation mode, no
    gradients): linear probing.
    """

    def __init__(
        self,
        encoder: EOModel,
        kind: str,
        num_classes: int,
        ignore_index: int = -100,
        freeze_encoder: bool = False,
        head: str = "auto",
    ):
        super().__init__()
        self.encoder, self.kind, self.ignore_index = encoder, kind, ignore_index
        self.freeze = freeze_encoder
        head_kind = segmentation_head_kind(head, encoder) if kind == "segmentation" else "classification"
        self.classifier = build_head(
            HeadConfig(head_kind, head_input_width(head_kind, encoder), num_classes, multilabel=kind == "multilabel")
        )
        if freeze_encoder:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> Supervised:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def head(self) -> nn.Module:
        return self.classifier

    def logits(self, batch: Batch) -> Tensor:
        head_kind = self.classifier.config.kind
        # Dense features cost memory: computed only for a dense head, on the finest modality given.
        dense = (
            self.encoder.dense_layout(list(batch.inputs), batch.patch_size_m or self.encoder.default_patch_size_m())[0]
            if head_kind == "dense"
            else None
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            features = self.encoder.features(
                batch.inputs, batch.dates, batch.date_mask, patch_size_m=batch.patch_size_m, dense=dense
            )
        read = self.classifier.read(features)
        if head_kind == "classification":
            return self.classifier(read)
        size = tuple(batch.label.shape[-2:])
        if head_kind == "dense":
            return self.classifier(read, output_size=size)
        logits = rearrange(self.classifier(read), "b h w k -> b k h w")
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)

    def forward(self, batch: Batch) -> StepOutput:
        if batch.label is None:
            raise EngineError(f"Dataset {batch.dataset!r} gives no labels: supervised training needs them.")
        logits = self.logits(batch)
        target = batch.label
        if self.kind == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        else:
            loss = F.cross_entropy(logits.float(), target.long(), ignore_index=self.ignore_index)
        return StepOutput(loss, {}, logits.detach())


def build_objective(config: ExperimentConfig, encoder: EOModel, num_classes: int) -> Objective:
    if config.objective == "omnisat":
        return OmniSatPretraining(encoder, config.pretrain.contrastive_weight, config.pretrain.reconstruction_weight)
    if config.objective == "anysat":
        return AnySatPretraining(encoder, config)
    if config.objective == "universat":
        return UniverSatPretraining(encoder, config)
    freeze = config.task.freeze_encoder or config.objective == "probe"
    return Supervised(encoder, config.task.kind, num_classes, config.task.ignore_index, freeze, config.task.head)
