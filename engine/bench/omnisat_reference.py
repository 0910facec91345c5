"""The public OmniSat reference encoder (gastruc/OmniSat), built from a checkout, for timing side by side.

The checkout stays outside the project: ``python -m engine bench omnisat --reference PATH``
imports its ``src`` folder and builds the TreeSatAI-TS encoder from the checkout's own
configuration (``configs/model/network/encoder/Omni.yaml``), with random weights. The
reference needs ``timm`` and ``easydict`` beside torch; install them into a separate
environment, not the project's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from engine.errors import EngineError

CONFIG = Path("configs/model/network/encoder/Omni.yaml")
# Our modality names -> the reference's input keys.
NAMES = {"aerial": "aerial", "s2": "s2", "s1_asc": "s1-asc"}


def _check_checkout(checkout: Path) -> None:
    if not (checkout / CONFIG).is_file() or not (checkout / "src" / "models").is_dir():
        raise EngineError(
            f"{checkout} is not a gastruc/OmniSat checkout (no {CONFIG} or src/models): "
            "pass the folder that holds the reference repository's configs/ and src/."
        )


def _import_reference(checkout: Path) -> tuple[Any, Any, Any]:
    source = str((checkout / "src").resolve())
    if source not in sys.path:
        sys.path.insert(0, source)
    try:
        from models.networks.encoder.Omni import OmniModule  # optional: the reference repository
        from models.networks.encoder.utils.ltae import LTAE2d  # optional: the reference repository
        from models.networks.encoder.utils.patch_embeddings import PatchEmbed  # optional: the reference repository
    except ImportError as error:
        raise EngineError(
            f"The reference code in {checkout} does not import ({error}): run the bench with a Python "
            "that has its dependencies (timm, easydict), e.g. a separate environment created with "
            "--system-site-packages beside this one."
        ) from error
    return OmniModule, LTAE2d, PatchEmbed


def load_reference_encoder(checkout: Path, modalities: tuple[str, ...] = ("aerial", "s2", "s1_asc")) -> nn.Module:
    """The reference OmniModule for ``modalities`` (our names), in eval mode, random weights."""
    import yaml  # optional: the reference repository

    checkout = Path(checkout)
    _check_checkout(checkout)
    omni_module, ltae2d, patch_embed = _import_reference(checkout)
    config = yaml.safe_load((checkout / CONFIG).read_text())
    projectors: dict[str, nn.Module] = {}
    for ours in modalities:
        theirs = NAMES[ours]
        args = {k: v for k, v in config["projectors"][theirs].items() if k != "_target_"}
        if theirs == "aerial":
            args["bias"] = config["pre_norm"]  # the YAML interpolates the encoder's pre_norm here
            projectors[theirs] = patch_embed(**args)
        else:
            projectors[theirs] = ltae2d(**args)
    keys = (
        "num_patches",
        "embed_dim",
        "depth",
        "num_heads",
        "mlp_ratio",
        "class_token",
        "pre_norm",
        "drop_rate",
        "pos_drop_rate",
        "patch_drop_rate",
        "drop_path_rate",
        "attn_drop_rate",
    )
    encoder = omni_module(
        projectors=projectors, modalities=[NAMES[m] for m in modalities], **{k: config[k] for k in keys}
    )
    return encoder.eval()


def reference_inputs(inputs: dict[str, Tensor], dates: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our batch -> the reference's input dict (series dates under ``<key>_dates``)."""
    batch = {NAMES[name]: x for name, x in inputs.items()}
    batch.update({f"{NAMES[name]}_dates": d for name, d in dates.items()})
    return batch
