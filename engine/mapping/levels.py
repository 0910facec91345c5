"""Embedding levels as data: the one registry of what a level reads, how wide it is, where it lies.

A job's ``outputs.embeddings_level`` (and the level a head or probe reads) names one of:

- ``patch``: the fused patch embeddings, one vector per patch, on the patch grid;
- ``local``: the per-patch encoder tokens before fusion (they follow each patch's own pixels);
- ``both``: [patch, local] concatenated;
- ``dense`` (AnySat): [patch token, sub-patch token] per sub-patch of the finest modality,
  on the sub-patch grid (n times finer than the patch grid). Inside the engine the n x n
  sub-patches of a patch travel as channels of that patch (``pack``), so windows blend
  exactly as at the patch level, and are laid out again on the sub-patch grid (``unpack``);
- ``tile``: one vector per window; windows are laid edge to edge without overlap, on a grid of
  window-sized cells.

Every list of levels (job validation, probes, the QGIS plugin's choices) derives from
``LEVELS``; adding a level is one entry here plus its tests. This module imports no torch
(the job parser uses it), only einops, which works on tensors and arrays alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from einops import rearrange

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.io.grid import Grid
    from engine.mapping.geometry import Geometry
    from engine.models.base import Features

EMBEDDING_LEVEL_TAG = "EMBEDDING_LEVEL"  # raster tag of embeddings written by the engine: their level


def _local(features: Features) -> Any:
    if features.local is None:
        raise EngineError('This model gives no local (pre-fusion) patch features: use "embeddings_level": "patch".')
    return features.local


def _both(features: Features) -> Any:
    import torch  # lazy: keeps torch out of this module

    return torch.cat([features.patch, _local(features)], dim=-1)


@dataclass(frozen=True)
class Level:
    """A level whose vectors lie one per patch, on the patch grid (class outputs of a head at this
    level: on the output grid, each patch as output_factor x output_factor pixels)."""

    name: str
    help: str  # for the parameters' help of every front end
    select: Callable[[Features], Any]  # the features of a model call at this level
    width_factor: int = 1  # vector width = width_factor x the model's embed_dim
    stream: str = "patch"  # the results stream: per patch ("patch") or per window ("tile")
    sub_patches: bool = False  # needs the plan's dense (sub-patch) layout
    edge_to_edge: bool = False  # windows laid without overlap

    def width(self, embed_dim: int) -> int:
        return self.width_factor * embed_dim

    def channels(self, width: int, geometry: Geometry) -> int:
        """Channels a ``width``-wide vector of this level takes in its stream."""
        return width

    def grid(self, geometry: Geometry, classes: bool = False) -> Grid:
        return geometry.output_grid if classes else geometry.patch_grid

    def pack(self, values: Any, geometry: Geometry) -> Any:
        """A model call's (B, h, w, C) or (B, C) values as its stream holds them."""
        return values

    def unpack(
        self, values: Any, covered: Any, row0: int, geometry: Geometry, classes: bool = False
    ) -> tuple[Any, Any, int, int]:
        """Finished stream rows (C, h, W) -> (values, covered, first row, pixels per cell) on this level's grid."""
        return values, covered, row0, geometry.output_factor if classes else 1


class DenseLevel(Level):
    """One vector per sub-patch of the dense modality: n x n sub-patches ride as channels of a patch."""

    def channels(self, width: int, geometry: Geometry) -> int:
        return width * geometry.dense.n**2

    def grid(self, geometry: Geometry, classes: bool = False) -> Grid:
        return geometry.dense.grid

    def pack(self, values: Any, geometry: Geometry) -> Any:
        n = geometry.dense.n
        return rearrange(values, "b (h r) (w s) c -> b h w (c r s)", r=n, s=n)

    def unpack(
        self, values: Any, covered: Any, row0: int, geometry: Geometry, classes: bool = False
    ) -> tuple[Any, Any, int, int]:
        from engine.io.writers import expand  # lazy: keeps rasterio out of this module

        n = geometry.dense.n
        return rearrange(values, "(c r s) h w -> c (h r) (w s)", r=n, s=n), expand(covered, n), row0 * n, 1


class TileLevel(Level):
    """One vector per window, on the grid of window cells."""

    def grid(self, geometry: Geometry, classes: bool = False) -> Grid:
        return geometry.tile_grid

    def unpack(
        self, values: Any, covered: Any, row0: int, geometry: Geometry, classes: bool = False
    ) -> tuple[Any, Any, int, int]:
        return values, covered, row0, 1


LEVELS: dict[str, Level] = {
    level.name: level
    for level in (
        Level("patch", "fused, one vector per patch", lambda f: f.patch),
        Level("local", "per-patch encoder tokens before fusion", _local),
        Level("both", "[patch, local]", _both, width_factor=2),
        DenseLevel(
            "dense",
            "AnySat: per sub-patch; UniverSat: per output cell at the job's resolution (class map at that resolution)",
            lambda f: f.dense,
            width_factor=2,
            sub_patches=True,
        ),
        TileLevel(
            "tile", "one cell per window, windows edge to edge", lambda f: f.tile, stream="tile", edge_to_edge=True
        ),
    )
}
LEVEL_NAMES = tuple(LEVELS)


def level(name: str) -> Level:
    if name not in LEVELS:
        raise EngineError(f"Unknown embeddings_level {name!r}: choose one of {', '.join(LEVEL_NAMES)}.")
    return LEVELS[name]
