"""OmniSat engine: multimodal Earth-observation models, raster I/O and tiled inference.

QGIS-free. The QGIS plugin runs it as a worker process (``python -m engine worker``).
"""

__version__ = "0.1.0"
