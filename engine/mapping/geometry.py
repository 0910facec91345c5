"""Where a mapping run's results lie: the grids of the patches, the outputs, each modality and the windows.

Part of the Plan (engine.mapping.plan builds it); each embedding level (engine.mapping.levels)
finds its own grid here.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.io.grid import Grid
from engine.mapping.tiling import WindowGrid


@dataclass(frozen=True)
class DenseLayout:
    """Where dense (per-sub-patch) features lie: the finest modality's sub-patches."""

    modality: str
    n: int  # sub-patches per patch side
    grid: Grid  # one cell per sub-patch


@dataclass(frozen=True)
class Geometry:
    """Where everything lies: the grids of the patches, the outputs, each modality, the windows."""

    patch_grid: Grid  # one cell per patch
    output_grid: Grid  # class outputs of a patch-level head
    modality_grids: dict[str, Grid]
    patch_size_m: float
    windows: WindowGrid
    dense: DenseLayout | None = None  # when a dense level is written
    tile_grid: Grid | None = None  # one cell per window, when a tile level is written

    @property
    def output_factor(self) -> int:
        return round(self.patch_grid.res / self.output_grid.res)
