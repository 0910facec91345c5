"""The interface every model of the engine offers (OmniSat, AnySat).

Inputs of a forward pass (a "modality batch"), already normalized:
    inputs: {name: Tensor}, image (B, C, H, W), time series (B, T, C, H, W);
    dates: {name: Tensor (B, T)} float day of year 1..366, for every series with dates;
    date_mask: optional {name: Tensor (B, T) bool}, True = valid date (False = padding / cloud).
Any non-empty subset of the model's modalities may be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from engine.errors import EngineError
from engine.io.normalize import normalize
from engine.models.modalities import ModalitySpec


@dataclass
class Features:
    tile: Tensor  # (B, D): one vector per tile
    patch: Tensor  # (B, Gh, Gw, D): one vector per patch, channels last
    dense: Tensor | None = None  # (B, Hs, Ws, 2D): AnySat's per-sub-patch output
    # (B, Gh, Gw, D): per-patch encoder tokens before fusion, averaged over the modalities
    # given. The fused ``patch`` mixes the whole tile; these depend on the patch's own pixels.
    local: Tensor | None = None


class EOModel(nn.Module):
    """Base of the engine's models; subclasses set ``config``, ``modalities``, ``embed_dim``.

    What tiled inference, training and probes need beyond the forward pass is declared here,
    with defaults a subclass overrides: ``default_patch_size_m`` and ``default_window`` (the
    job's defaults), ``has_dense_features`` / ``dense_layout`` / ``features(dense=...)``
    (per-sub-patch features, which only some models give).
    """

    config: Any
    modalities: dict[str, ModalitySpec]
    embed_dim: int
    has_dense_features: bool = False  # per-sub-patch features (Features.dense)
    square_windows: bool = False  # takes square inputs only: an area narrower than a window gets narrower windows

    def forward_features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
    ) -> Features:
        raise NotImplementedError

    def features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        dense: str | None = None,
    ) -> Features:
        """``forward_features``, with dense features on modality ``dense``'s sub-patches when it is given."""
        if dense is not None:
            self.dense_layout([dense], patch_size_m or self.default_patch_size_m())
        return self.forward_features(inputs, dates, date_mask, patch_size_m=patch_size_m)

    def default_patch_size_m(self) -> float | None:
        """The patch size a job gets when it gives none (the config's ``patch_size_m``)."""
        value = getattr(self.config, "patch_size_m", None)
        return float(value) if value is not None else None

    def default_window(self) -> int | None:
        """Window side in patches a job gets when it gives none; None: the engine's default."""
        return None

    def dense_layout(self, modalities: list[str], patch_size_m: float) -> tuple[str, int]:
        """(modality, sub-patches per patch side) of the dense grid among ``modalities``."""
        raise EngineError(
            f'"embeddings_level": "dense" needs per-sub-patch features, which only AnySat models give; '
            f'{type(self).__name__} has none: choose "patch", "local", "both" or "tile", or an anysat-* model.'
        )

    def normalize(self, name: str, tensor: Tensor) -> Tensor:
        """(x - mean) / std with the spec's per-band statistics (engine.io.normalize, as inference)."""
        spec = self._spec(name)
        return normalize(tensor, spec.mean, spec.std)

    def band_fill(self, name: str) -> tuple[float, str]:
        """The normalized value this model puts in a band the input lacks, and how to say so.

        Models trained without band dropout have no such value: they need every band.
        """
        raise EngineError(
            f"This {type(self).__name__} model needs every band of {name!r} "
            f"({', '.join(self._spec(name).bands)}); only AnySat models fill a missing band (with the "
            "padding value they learned). Give every band, or use an AnySat checkpoint."
        )

    def missing_band_fill(self, name: str, missing: list[str]) -> tuple[float, str]:
        """``band_fill``'s value and the log sentence naming the ``missing`` bands."""
        value, how = self.band_fill(name)
        return value, (
            f"{name}: {len(missing)} of {self._spec(name).n_bands} bands missing "
            f"({', '.join(missing)}), filled with {how}."
        )

    def _spec(self, name: str) -> ModalitySpec:
        if name not in self.modalities:
            raise EngineError(
                f"Unknown modality {name!r} for this model. It was trained with: {', '.join(self.modalities)}."
            )
        return self.modalities[name]

    def check_inputs(
        self, inputs: dict[str, Tensor], dates: dict[str, Tensor] | None, date_mask: dict[str, Tensor] | None
    ) -> int:
        """Validate a modality batch against the specs; returns the batch size.

        Every message says what was expected, so a user can fix the layer or setting.
        """
        if not inputs:
            raise EngineError(f"No input given: pass at least one of the modalities {', '.join(self.modalities)}.")
        dates, date_mask = dates or {}, date_mask or {}
        batch = None
        for name, x in inputs.items():
            spec = self._spec(name)
            want = 4 if spec.kind == "image" else 5
            layout = "(B, C, H, W)" if spec.kind == "image" else "(B, T, C, H, W)"
            if not isinstance(x, Tensor) or x.dim() != want:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise EngineError(f"Modality {name!r} is {spec.kind} data: expected a tensor {layout}, got {shape}.")
            channels = x.shape[1] if spec.kind == "image" else x.shape[2]
            if channels != spec.n_bands:
                raise EngineError(
                    f"Modality {name!r} has {channels} bands but the model expects {spec.n_bands} "
                    f"({', '.join(spec.bands)}), in that order."
                )
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise EngineError(f"Modality {name!r} has batch size {x.shape[0]}, the others {batch}.")
            if not torch.isfinite(x).all():
                raise EngineError(
                    f"Modality {name!r} contains NaN or infinite values: fill or mask nodata before inference."
                )
            if spec.kind == "series":
                self._check_dates(name, spec, x, dates.get(name), date_mask.get(name))
        unknown = sorted(set(dates) - set(inputs)) + sorted(set(date_mask) - set(inputs))
        if unknown:
            raise EngineError(f"Dates or date masks given for modalities without data: {', '.join(unknown)}.")
        return int(batch)

    @staticmethod
    def _check_dates(name: str, spec: ModalitySpec, x: Tensor, dates: Tensor | None, mask: Tensor | None) -> None:
        b, t = x.shape[:2]
        if t < 1:
            raise EngineError(f"Time series {name!r} has no dates (T = 0).")
        if spec.has_dates:
            if dates is None:
                raise EngineError(
                    f"Time series {name!r} needs its dates: a tensor (B, T) = ({b}, {t}) of day of year (1..366)."
                )
            if tuple(dates.shape) != (b, t):
                raise EngineError(
                    f"Dates of {name!r} have shape {tuple(dates.shape)}, expected (B, T) = ({b}, {t}): "
                    "one day of year per observation."
                )
            if not torch.isfinite(dates).all():
                raise EngineError(f"Dates of {name!r} contain NaN: every observation needs a day of year.")
        if mask is not None:
            if tuple(mask.shape) != (b, t) or mask.dtype != torch.bool:
                raise EngineError(
                    f"Date mask of {name!r} must be a bool tensor (B, T) = ({b}, {t}), "
                    f"got {mask.dtype} {tuple(mask.shape)}."
                )
            if not mask.any(dim=1).all():
                raise EngineError(f"Time series {name!r}: a sample has every date masked; keep at least one.")
