"""Training checkpoints: everything needed to continue a run exactly, with no pickle.

A checkpoint is a folder ``<out_dir>/checkpoints/step_<N>/`` holding
    weights.safetensors    the objective's modules (encoder, heads, decoders, EMA teacher, ...)
    optimizer.safetensors  optimizer tensors (moments, step counts) and RNG states
    state.json             step, optimizer param groups and scalar state, scheduler,
                           sampler positions, the experiment config and model config
It is written into a hidden temporary folder and renamed when complete, then
``latest.json`` (itself replaced atomically) is pointed at it: a crash at any
moment leaves the previous checkpoint whole and ``latest.json`` naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import EngineError

FORMAT = "omnisat-training-checkpoint"
VERSION = 1
LATEST = "latest.json"


@dataclass
class TrainingState:
    step: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    sampler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    identity: dict[str, Any]  # what the weights belong to: preset, model config, objective
    extra: dict[str, Any]


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of optimizer.state_dict() go to safetensors, the rest to JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    states = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["rng.cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["rng.torch"])
    if "rng.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["rng.cuda"])


def save_state(out_dir: Path, state: TrainingState, keep: int = 3) -> Path:
    folder = out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{state.step:08d}"
    temp = folder / f".partial-{final.name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        optim_tensors, optim_meta = _split_optimizer(state.optimizer)
        weights = {k: v.detach().cpu().contiguous() for k, v in state.weights.items()}
        save_file(weights, str(temp / "weights.safetensors"), metadata={"format": FORMAT})
        save_file({**optim_tensors, **state.rng}, str(temp / "optimizer.safetensors"), metadata={"format": FORMAT})
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "step": state.step,
            "optimizer": optim_meta,
            "scheduler": state.scheduler,
            "sampler": state.sampler,
            "identity": state.identity,
            "extra": state.extra,
        }
        (temp / "state.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        for file in temp.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    pointer = folder / f".{LATEST}.{uuid.uuid4().hex[:8]}"
    pointer.write_text(json.dumps({"step": state.step, "path": final.name}))
    os.replace(pointer, folder / LATEST)
    _prune(folder, keep, final)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")


def _prune(folder: Path, keep: int, newest: Path) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != newest:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a folder, a run folder or its checkpoints folder (via latest.json)."""
    candidate = Path(path).expanduser()
    for base in (candidate, candidate / "checkpoints"):
        if (base / "state.json").is_file():
            return base
        if (base / LATEST).is_file():
            name = json.loads((base / LATEST).read_text())["path"]
            return base / name
    raise EngineError(
        f"No training checkpoint at '{candidate}': give a run folder (with checkpoints/latest.json) "
        "or a checkpoints/step_N folder."
    )


def load_state(path: str | Path) -> TrainingState:
    folder = resolve_checkpoint(path)
    try:
        meta = json.loads((folder / "state.json").read_text())
        weights = load_file(str(folder / "weights.safetensors"))
        other = load_file(str(folder / "optimizer.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise EngineError(f"The training checkpoint '{folder}' is unreadable or incomplete ({exc}).") from None
    if meta.get("format") != FORMAT:
        raise EngineError(f"'{folder}' is not a training checkpoint of this project (format {meta.get('format')!r}).")
    if meta.get("version", 0) > VERSION:
        raise EngineError(f"'{folder}' was written by a newer version (format {meta['version']}); update the project.")
    rng = {k: v for k, v in other.items() if k.startswith("rng.")}
    return TrainingState(
        step=int(meta["step"]),
        weights=weights,
        optimizer=_join_optimizer(other, meta["optimizer"]),
        scheduler=meta["scheduler"],
        sampler=meta["sampler"],
        rng=rng,
        identity=meta["identity"],
        extra=meta.get("extra", {}),
    )


def check_identity(saved: dict[str, Any], current: dict[str, Any], where: Path | str) -> None:
    """Refuse to resume a checkpoint of another model or objective, naming what differs."""
    differences = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if differences:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in differences[:3])
        raise EngineError(
            f"The checkpoint '{where}' belongs to another model or objective ({detail}). "
            "Resume with the config that wrote it, or start a new run in another train.out_dir."
        )
