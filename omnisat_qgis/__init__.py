"""OmniSat for QGIS: the plugin. Thin: it gathers inputs, runs the engine worker, loads results.

Importing this package must stay cheap and must never import torch or rasterio:
the engine runs in a separate worker process.
"""


def classFactory(iface):  # noqa: N802 - QGIS's entry point name
    from omnisat_qgis.plugin import OmniSatPlugin

    return OmniSatPlugin(iface)
