"""The engine's contract (engine/contract.py: protocol version, file formats, safetensors header,
sha256, dates), loaded from the engine's folder by its path.

The plugin and the engine then read one module, while QGIS's process still imports nothing else
of the engine: no sys.path entry, no torch. An installed plugin carries the engine inside its folder,
a source checkout beside it (omnisat_qgis.paths.engine_root).
"""

from __future__ import annotations

import importlib.util
import sys

from omnisat_qgis.paths import engine_root

_NAME = "omnisat_qgis._engine_contract"


def _load():
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, engine_root() / "engine" / "contract.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


contract = _load()
