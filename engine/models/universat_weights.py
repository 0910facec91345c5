"""The released UniverSat weights: the hub layout (``config.json`` + ``model.safetensors``) read directly.

The safetensors file holds the reference module's state dict one level down (``model.``
prefix, from the hub wrapper). Every key is mapped by name (``release_key``): the Universal
Patch Encoder's four pooling blocks are indexed by axis (S1, C, T, S) in the release and by
name here; the trunk's block list (fusion, ``depth`` self-attention blocks, an identity for
the bilinear resampling, the sub-patch cross block) becomes named modules. The training-only
per-(dataset, sensor) projectors are dropped, and said so. No unpickling anywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from engine.errors import EngineError
from engine.io.download import download, sha256_of
from engine.models.checkpoint import save_checkpoint
from engine.models.pins import pin
from engine.models.universal_patch import AXES
from engine.models.universat import SIZES, UniverSat, UniverSatConfig, universat_config

_ROPE = re.compile(r"(.*)attn\.rope\.freqs$")
_CODE = re.compile(r"^spatial_encoder\.Encoding_(.+)$")
_UPE_RENAMES = {
    "spectral_embed": "wavelength_embed",
    "embed": "value_embed",
    "spatial_proj": "sub_proj",
    "predictor_norm": "norm",
    "final_proj": "final_proj",
    "registers_temporal": "registers_temporal",
    "registers_spatial": "registers_spatial",
}


def _rope(key: str) -> str:
    match = _ROPE.match(key)
    return f"{match.group(1)}attn.rope_freqs" if match else key


def release_key(key: str, depth: int) -> str | None:
    """Our parameter name for a key of the released state dict (without ``model.``); None: dropped."""
    if key.startswith("projector__") or key.startswith("norm_pre."):
        return None
    if key == "registers":
        return key
    code = _CODE.match(key)
    if code:
        return f"patch_encoder.channel_codes.{code.group(1)}"
    if key.startswith("spatial_encoder."):
        rest = key[len("spatial_encoder.") :]
        if rest.startswith("predictor_blocks."):
            _, index, inner = rest.split(".", 2)
            return _rope(f"patch_encoder.blocks.{AXES[int(index)]}.{inner}")
        head, _, inner = rest.partition(".")
        if head in _UPE_RENAMES:
            return f"patch_encoder.{_UPE_RENAMES[head]}" + (f".{inner}" if inner else "")
        raise EngineError(f"Unexpected key in the UniverSat weights: {key!r}.")
    if key.startswith("blocks."):
        _, index, inner = key.split(".", 2)
        i = int(index)
        if i == 0:
            return f"fusion.{inner}"
        if 1 <= i <= depth:
            return _rope(f"blocks.{i - 1}.{inner}")
        if i == depth + 2:
            inner = _rope(inner).replace("attn.rope_freqs", "rope_freqs")
            return "sub_cross." + (inner[len("attn.") :] if inner.startswith("attn.") else inner)
    raise EngineError(f"Unexpected key in the UniverSat weights: {key!r}.")


def map_release_state(state: dict[str, Tensor], depth: int) -> tuple[dict[str, Tensor], list[str]]:
    """(our state dict, the dropped release keys)."""
    ours, dropped = {}, []
    for key, value in state.items():
        bare = key[len("model.") :] if key.startswith("model.") else key
        name = release_key(bare, depth)
        if name is None:
            dropped.append(key)
        else:
            ours[name] = value
    return ours, dropped


def load_release_state(model: UniverSat, state: dict[str, Tensor]) -> list[str]:
    """Load released weights into ``model`` (every parameter must be given); returns the dropped keys."""
    ours, dropped = map_release_state(state, model.config.depth)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    if missing or extra:
        raise EngineError(
            "These UniverSat weights do not fit the architecture: "
            + (f"missing {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}; " if missing else "")
            + (f"unexpected {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}" if extra else "")
        )
    for name, value in ours.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise EngineError(
                f"UniverSat weight {name!r} has shape {tuple(value.shape)}, the architecture "
                f"{tuple(expected[name].shape)}: the file is of another size."
            )
    model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return dropped


def config_from_hub(config: dict[str, Any]) -> UniverSatConfig:
    """The architecture a hub ``config.json`` describes (its ``size``); sensors: the engine's table."""
    size = str(config.get("size", "base"))
    if size not in SIZES:
        raise EngineError(f"config.json names UniverSat size {size!r}; this engine knows {', '.join(SIZES)}.")
    return universat_config(size)


def load_hub_folder(folder: Path) -> tuple[UniverSat, list[str]]:
    """A model from a folder holding the hub layout: ``config.json`` and ``model.safetensors``."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise EngineError(f"{path} is missing: a UniverSat folder holds config.json and model.safetensors.")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{config_path} is not readable JSON: {exc}") from None
    model = UniverSat(config_from_hub(config))
    dropped = load_release_state(model, load_file(str(weights_path)))
    return model.eval(), dropped


def to_release_state(model: UniverSat) -> dict[str, Tensor]:
    """Our weights under the release's names (for test files in the published layout)."""
    inverse = {}
    depth = model.config.depth
    names = ["registers"] + [f"spatial_encoder.Encoding_{c}" for c in model.patch_encoder.channel_codes]
    for i, axis in enumerate(AXES):
        for inner in model.patch_encoder.blocks[axis].state_dict():
            names.append(f"spatial_encoder.predictor_blocks.{i}.{inner.replace('attn.rope_freqs', 'attn.rope.freqs')}")
    for head, ours in _UPE_RENAMES.items():
        module = getattr(model.patch_encoder, ours)
        keys = [""] if isinstance(module, torch.nn.Parameter) else [f".{k}" for k in module.state_dict()]
        names += [f"spatial_encoder.{head}{k}" for k in keys]
    names += [f"blocks.0.{k}" for k in model.fusion.state_dict()]
    for i, block in enumerate(model.blocks):
        names += [f"blocks.{i + 1}.{k.replace('attn.rope_freqs', 'attn.rope.freqs')}" for k in block.state_dict()]
    for k in model.sub_cross.state_dict():
        outer = k.startswith(("norm_q", "norm_kv", "norm2", "mlp"))
        names.append(f"blocks.{depth + 2}." + (k if outer else "attn." + k.replace("rope_freqs", "rope.freqs")))
    state = model.state_dict()
    for name in names:
        inverse["model." + name] = state[release_key(name, depth)].detach().clone()
    return inverse


def fetch_hub_model(
    entry,
    base: str,
    folder: Path,
    checkpoint: Path,
    expected: str | None,
    reporter,
    timeout_s: float,
    keep_download: bool,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Download ``config.json`` and ``model.safetensors`` of a hub repository, verify or record the weights'
    sha256 (engine.models.pins), convert them into an engine checkpoint at ``checkpoint``."""
    downloads = folder / "downloads" / entry.name
    root = f"{base.rstrip('/')}/{entry.repository}/resolve/main"
    download(f"{root}/config.json", downloads / "config.json", None, reporter, timeout_s=timeout_s, start=0.0, end=2.0)
    fetched = download(
        f"{root}/{entry.file}",
        downloads / "model.safetensors",
        expected,
        reporter,
        timeout_s=timeout_s,
        start=2.0,
        end=80.0,
    )
    found = sha256_of(downloads / "model.safetensors")
    if expected is None:
        try:
            pin(folder, entry.name, found)
        except EngineError:
            (downloads / "model.safetensors").unlink()
            raise
        reporter.log(
            f"{entry.name}: no published sha256 can be read from here; recorded this download's, {found}, "
            f"in {folder / 'pinned-sha256.json'}: a later download that differs will be refused"
        )
    reporter.progress(82, "reading the hub layout")
    model, dropped = load_hub_folder(downloads)
    reporter.log(f"{len(dropped)} training-only tensors dropped (the per-dataset SSL projectors)")
    provenance = {
        **provenance,
        "reference_sha256": found,
        "sha256_source": "pinned in the catalog" if entry.sha256 else "recorded at the first download",
        "dropped_keys": len(dropped),
    }
    save_checkpoint(checkpoint, model, provenance=provenance)
    if not keep_download:
        for name in ("config.json", "model.safetensors"):
            (downloads / name).unlink(missing_ok=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return {"downloaded": fetched, "sha256": found, "dropped": len(dropped)}
