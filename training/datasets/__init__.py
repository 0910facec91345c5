"""Dataset readers: official layouts of TreeSatAI-TS, PASTIS-HD and FLAIR, and a user's rasters."""

from __future__ import annotations

from engine.errors import EngineError
from training.config import DatasetConfig
from training.datasets.common import Batch, Sample, TileDataset, collate


def open_dataset(
    config: DatasetConfig,
    split: str,
    *,
    train: bool,
    bands: dict[str, int] | None = None,
    segmentation: bool = False,
    model=None,
    reporter=None,
) -> TileDataset:
    """The reader for ``config.format`` on one split (``reporter``: where the rasters reader logs)."""
    common = dict(
        split=split,
        modalities=config.modalities,
        max_dates=config.max_dates,
        train=train,
        bands=bands,
        options=config.options,
    )
    if config.format == "treesatai":
        from training.datasets.treesatai import TreeSatAI  # lazy: keeps torch and rasterio out of this module

        if segmentation:
            raise EngineError("TreeSatAI-TS has tile labels only: use task.kind multilabel.")
        return TreeSatAI(config.root, **common)
    if config.format == "pastis":
        from training.datasets.pastis import Pastis  # lazy: keeps torch and rasterio out of this module

        return Pastis(config.root, segmentation=segmentation, **common)
    if config.format == "flair":
        from training.datasets.flair import Flair  # lazy: keeps torch and rasterio out of this module

        return Flair(config.root, segmentation=segmentation, **common)
    from training.datasets.rasters import RasterTiles  # lazy: keeps torch and rasterio out of this module

    if model is None:
        raise EngineError("Format 'rasters' reads the user's layers for a given model: pass the model.")
    return RasterTiles(config.root, model=model, reporter=reporter, **common)


__all__ = ["Batch", "Sample", "TileDataset", "collate", "open_dataset"]
