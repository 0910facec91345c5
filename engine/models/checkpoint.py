"""Self-describing checkpoints: safetensors weights + JSON metadata, never pickle.

The metadata holds everything needed to rebuild the model from the file alone:
architecture config (including each modality's bands, order and normalization),
head config, class names and colours, provenance and a format version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from engine.contract import CHECKPOINT_FORMAT as FORMAT
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.models.base import EOModel
from engine.models.heads import HeadConfig, build_head, head_input_width
from engine.models.registry import build_model

FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    model: EOModel
    head: nn.Module | None
    metadata: dict[str, Any]  # decoded JSON: format, format_version, config, head, classes, colors, provenance


def _check_head_fits(config: HeadConfig, model: EOModel, where: str) -> None:
    width = head_input_width(config.kind, model)
    if config.embed_dim != width:
        raise EngineError(
            f"The {config.kind} head {where} reads features {config.embed_dim} wide, but the model gives "
            f"{width}: the head was made for another model."
        )


def _tensors(model: nn.Module, head: nn.Module | None) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if head is not None:
        tensors.update({f"head.{k}": v.detach().contiguous().cpu() for k, v in head.state_dict().items()})
    return tensors


def save_checkpoint(
    path: str | os.PathLike,
    model: EOModel,
    *,
    head: nn.Module | None = None,
    classes: list[str] | None = None,
    colors: list[str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write model (+ head) weights and metadata atomically to ``path`` (.safetensors)."""
    if head is not None and not isinstance(getattr(head, "config", None), HeadConfig):
        raise EngineError("The head to save has no HeadConfig: build it with engine.models.heads.build_head.")
    if head is not None:
        _check_head_fits(head.config, model, "to save")
    if classes is not None and head is not None and len(classes) != head.config.n_classes:
        raise EngineError(f"{len(classes)} class names for a head with {head.config.n_classes} classes.")
    if colors is not None and classes is not None and len(colors) != len(classes):
        raise EngineError(f"{len(colors)} colours for {len(classes)} classes: give one colour per class.")
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "head": json.dumps(head.config.to_dict() if head is not None else None),
        "classes": json.dumps(classes),
        "colors": json.dumps(colors),
        "provenance": json.dumps(provenance or {}),
    }
    with atomic_output(path, "checkpoint") as temp:
        save_file(_tensors(model, head), str(temp), metadata=metadata)
    return Path(path)


def is_pytorch_pickle(path: Path) -> bool:
    """Whether the file is what torch.save writes: a zip holding data.pkl, or a bare pickle (protocol 2+)."""
    with path.open("rb") as f:
        head = f.read(2)
    if head == b"PK":
        with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
        return False
    return len(head) == 2 and head[0] == 0x80 and head[1] >= 2


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded metadata of a checkpoint, with clear errors for foreign or broken files."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"Checkpoint '{path}' does not exist: check the model file path.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        if is_pytorch_pickle(path):
            raise EngineError(
                f"'{path}' is a PyTorch pickle, not an engine checkpoint: convert it with "
                f"`python -m engine import-anysat {path} MODEL.safetensors` and give the .safetensors file."
            ) from None
        raise EngineError(
            f"'{path}' is not a readable safetensors checkpoint ({exc}); the file may be truncated or of another "
            "format. Re-download or re-export it."
        ) from None
    if raw.get("format") != FORMAT:
        raise EngineError(
            f"'{path}' is a safetensors file but not an engine checkpoint (no '{FORMAT}' metadata). "
            "Reference .pth weights must be converted first."
        )
    if int(raw.get("format_version", "0")) > FORMAT_VERSION:
        raise EngineError(
            f"Checkpoint '{path}' has format version {raw['format_version']}, newer than this engine "
            f"({FORMAT_VERSION}): update the plugin."
        )
    try:
        meta = {k: json.loads(v) for k, v in raw.items() if k not in ("format", "format_version")}
    except json.JSONDecodeError as exc:
        raise EngineError(f"Checkpoint '{path}' has corrupted metadata ({exc}).") from None
    meta["format"], meta["format_version"] = raw["format"], int(raw["format_version"])
    return meta


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Rebuild model and head from the file alone, in eval mode."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        model = build_model(meta["config"])
        head = build_head(HeadConfig.from_dict(meta["head"])) if meta.get("head") else None
    except (KeyError, TypeError) as exc:
        raise EngineError(f"Checkpoint '{path}' has an incomplete architecture description ({exc}).") from None
    if head is not None:
        _check_head_fits(head.config, model, f"in '{path}'")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise EngineError(f"Cannot read the weights in '{path}' ({exc}); the file is corrupted.") from None
    for prefix, module in (("model.", model), ("head.", head)):
        if module is None:
            continue
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EngineError(f"The weights in '{path}' do not match its architecture: {exc}") from None
    model.to(device).eval()
    if head is not None:
        head.to(device).eval()
    return LoadedCheckpoint(model, head, meta)


def checkpoint_hash(path: str | os.PathLike) -> str:
    """sha256 of the tensors (names, dtypes, shapes and bytes), independent of metadata."""
    read_metadata(path)
    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for key in sorted(f.keys()):
            tensor = f.get_tensor(key).contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
