"""One registry of model architectures and presets.

An architecture is a config dataclass (with ``architecture`` name, ``to_dict`` and
``from_dict``) plus the model class built from it. A preset is a named builder of
such a config, with metadata for listings (paper, dataset, what it expects).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from engine.errors import EngineError
from engine.models.base import EOModel

# Modules that register architectures and presets when imported.
ARCHITECTURE_MODULES = ("engine.models.omnisat", "engine.models.anysat", "engine.models.universat")


@dataclass(frozen=True)
class Architecture:
    name: str
    config_type: type
    model_type: Callable[[Any], EOModel]


@dataclass(frozen=True)
class Preset:
    name: str
    builder: Callable[[], Any]  # returns a fresh config
    metadata: dict[str, Any]


_ARCHITECTURES: dict[str, Architecture] = {}
_PRESETS: dict[str, Preset] = {}


def register_architecture(name: str, config_type: type, model_type: Callable[[Any], EOModel]) -> None:
    if name in _ARCHITECTURES and _ARCHITECTURES[name].config_type is not config_type:
        raise RuntimeError(f"architecture {name!r} registered twice")
    _ARCHITECTURES[name] = Architecture(name, config_type, model_type)


def register_preset(name: str, builder: Callable[[], Any], metadata: dict[str, Any] | None = None) -> None:
    if name in _PRESETS and _PRESETS[name].builder is not builder:
        raise RuntimeError(f"preset {name!r} registered twice")
    _PRESETS[name] = Preset(name, builder, dict(metadata or {}))


def _load_modules() -> None:
    for module in ARCHITECTURE_MODULES:
        importlib.import_module(module)


def preset_names() -> list[str]:
    _load_modules()
    return sorted(_PRESETS)


def preset(name: str) -> Preset:
    _load_modules()
    if name not in _PRESETS:
        raise EngineError(f"Unknown model preset {name!r}. Available presets: {', '.join(sorted(_PRESETS))}.")
    return _PRESETS[name]


def config_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild an architecture config from its ``to_dict`` form (with the 'architecture' key)."""
    _load_modules()
    name = data.get("architecture") if isinstance(data, dict) else None
    if name not in _ARCHITECTURES:
        raise EngineError(
            f"Unknown model architecture {name!r}. Known architectures: {', '.join(sorted(_ARCHITECTURES))}."
        )
    return _ARCHITECTURES[name].config_type.from_dict(data)


def build_model(config: Any) -> EOModel:
    """A model from a preset name, a config dataclass, or a config dict."""
    _load_modules()
    if isinstance(config, str):
        config = preset(config).builder()
    elif isinstance(config, dict):
        config = config_from_dict(config)
    if not dataclasses.is_dataclass(config):
        raise EngineError(f"Cannot build a model from {type(config).__name__}: give a preset name or a config.")
    name = getattr(config, "architecture", None)
    if name not in _ARCHITECTURES:
        raise EngineError(f"Config {type(config).__name__} names no known architecture ({name!r}).")
    return _ARCHITECTURES[name].model_type(config)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts per component, plus 'total'.

    Components come from ``model.parameter_groups()`` ({component: module}) when the
    model defines it, else from its top-level children.
    """
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else dict(model.named_children())
    counts = {
        name: item.numel() if isinstance(item, nn.Parameter) else sum(p.numel() for p in item.parameters())
        for name, item in groups.items()
    }
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
