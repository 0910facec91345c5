"""Layers and model for the UniverSat run in real QGIS (tests/gui_run/universat_run.sh), written with the venv.

    python -m tests.gui_run.universat_prepare SHARED_DATA OUT [tiny|base]

OUT/data/eolearn: the plugin tests' scene (three clear eo-learn Sentinel-2 dates, 10 named bands);
OUT/models/universat-<size>-random.safetensors: a UniverSat checkpoint with random weights (torch seed
0) and the released sensor table, in the models folder the run points QGIS at. Nothing is written
into SHARED_DATA.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.plugin.scenes import write_scene


def main(argv: list[str]) -> int:
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.universat import UniverSat, universat_config

    shared, out = Path(argv[0]), Path(argv[1])
    size = argv[2] if len(argv) > 2 else "tiny"
    write_scene(shared, out / "data" / "eolearn")
    (out / "models").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    path = save_checkpoint(
        out / "models" / f"universat-{size}-random.safetensors",
        UniverSat(universat_config(size)),
        provenance={"weights": "random, torch seed 0 (the real-QGIS run)"},
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
