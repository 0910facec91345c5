"""Styles and metadata for results that Processing adds to a project.

Processing (the toolbox, ``processing.runAndLoadResults``, models) loads an
algorithm's outputs itself, after the algorithm ran, and calls the
QgsProcessingLayerPostProcessorInterface set on each output: that is where a
class map gets its paletted legend, confidence its grey ramp, and embeddings their
principal-component preview, whatever front end started the run.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
)

from omnisat_qgis.embedding_preview import preview_path
from omnisat_qgis.layer_metadata import RunRecord
from omnisat_qgis.styling import style_layer

# Processing holds post-processors by pointer only: Python must keep them alive
# until the layers are loaded. One set per output path; a rerun replaces it.
_ALIVE: dict[str, StyleResult] = {}


class StyleResult(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, style: str, record: RunRecord, output: str):
        super().__init__()
        self.style, self.record, self.output = style, record, output

    def postProcessLayer(self, layer, context: QgsProcessingContext, feedback: QgsProcessingFeedback):  # noqa: N802
        if not isinstance(layer, QgsRasterLayer):
            return
        layer.setMetadata(self.record.metadata(layer, self.output))
        if self.style == "embeddings":
            self._add_preview(layer, context)
        elif not style_layer(layer, self.style):
            feedback.pushWarning(f"{layer.name()}: the raster records no classes to style.")
        layer.triggerRepaint()

    def _add_preview(self, layer: QgsRasterLayer, context: QgsProcessingContext) -> None:
        """The PCA view goes above the embeddings layer, which stays in the project (unchecked) for probes."""
        path = preview_path(layer.source().split("|")[0])
        project = layer.project() or context.project()
        if not path.is_file() or project is None:
            return
        preview = QgsRasterLayer(str(path), f"{layer.name()} (principal components RGB)", "gdal")
        if not style_layer(preview, "rgb"):
            return
        preview.setMetadata(self.record.metadata(preview, f"{self.output}: principal components 1-3 as RGB"))
        project.addMapLayer(preview, False)
        node = project.layerTreeRoot().findLayer(layer.id())
        parent = node.parent() if node is not None else project.layerTreeRoot()
        index = parent.children().index(node) if node is not None else 0
        parent.insertLayer(index, preview)
        if node is not None:
            node.setItemVisibilityChecked(False)


def attach(context: QgsProcessingContext, path: str, style: str, record: RunRecord, output: str) -> bool:
    """Style ``path`` when Processing loads it into the project; False when it will not be loaded."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return False
    processor = StyleResult(style, record, output)
    _ALIVE[str(Path(path))] = processor
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)
    return True
