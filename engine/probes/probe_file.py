"""The probe file: a fitted classifier saved as safetensors arrays with JSON metadata.

Every kind is saved that way (no pickle, whatever the kind), naming the classes, their
colours, the embedding level and the hash of the encoder that produced the embeddings:
a probe applied to other embeddings would give meaningless maps, so that is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from engine.contract import PROBE_FORMAT
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.mapping.levels import level
from engine.probes.classifiers import STORED_KINDS, Classifier, rebuild_classifier

PROBE_VERSION = 2  # 2: any classifier kind (1: linear / mlp only; still read)


@dataclass
class ProbeMetadata:
    class_names: list[str]
    colors: list[str]  # "#rrggbb", one per class
    level: str  # embedding level (engine.mapping.levels)
    encoder_hash: str  # sha256 of the encoder's tensors
    encoder: dict[str, Any] = field(default_factory=dict)  # preset/checkpoint name, patch size, modalities...
    config: dict[str, Any] = field(default_factory=dict)  # ProbeConfig as a dict
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics at fit time
    labels: dict[str, Any] = field(default_factory=dict)  # label file, counts, dropped features
    features: dict[str, Any] = field(default_factory=lambda: {"set": "embeddings"})  # engine.probes.features record
    validation: dict[str, Any] = field(default_factory=dict)  # rule, candidates' scores, learning curve


DEFAULT_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
)


def default_colors(n: int) -> list[str]:
    if n <= len(DEFAULT_COLORS):
        return list(DEFAULT_COLORS[:n])
    rng = np.random.default_rng(n)
    extra = ["#{:02x}{:02x}{:02x}".format(*tuple(rng.integers(30, 230, 3))) for _ in range(n - len(DEFAULT_COLORS))]
    return list(DEFAULT_COLORS) + extra


def class_colors(names: Sequence[str], given: Sequence[str] | None) -> list[str]:
    """One colour per class: ``given`` in class order, or as NAME=#rrggbb pairs (a class not named
    keeps the default palette's colour of its position); nothing given, the default palette."""
    defaults = default_colors(len(names))
    if not given:
        return defaults
    pairs = [g for g in given if "=" in g]
    if not pairs:
        return list(given)
    if len(pairs) != len(given):
        raise EngineError("Give the class colours either all in class order (#rrggbb) or all as NAME=#rrggbb.")
    by_name = dict(g.rsplit("=", 1) for g in pairs)
    return [by_name.get(name, colour) for name, colour in zip(names, defaults)]


def save_probe(path: str | Path, probe: Classifier, metadata: ProbeMetadata) -> Path:
    level(metadata.level)  # a known level, or a clear error
    if len(metadata.class_names) != probe.n_classes or len(metadata.colors) != probe.n_classes:
        raise ValueError("class names and colours must match the probe's classes")
    header = {
        "format": PROBE_FORMAT,
        "format_version": str(PROBE_VERSION),
        "architecture": json.dumps(probe.architecture()),
        "probe": json.dumps(asdict(metadata)),
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in probe.arrays().items()}
    with atomic_output(path, "probe file") as temp:
        save_file(tensors, str(temp), metadata=header)
    return Path(path)


def is_probe_file(path: str | Path) -> bool:
    """Whether ``path`` is a probe file (its header says so), read without its tensors."""
    file = Path(path).expanduser()
    if not file.is_file():
        return False
    try:
        with safe_open(str(file), framework="numpy") as handle:
            return (handle.metadata() or {}).get("format") == PROBE_FORMAT
    except (SafetensorError, OSError, ValueError):
        return False


def load_probe(path: str | Path) -> tuple[Classifier, ProbeMetadata]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise EngineError(f"The probe file '{file}' does not exist: fit a probe first (fit-probe).")
    try:
        with safe_open(str(file), framework="numpy") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EngineError(f"'{file}' is not a readable probe file ({exc}): fit the probe again.") from None
    if header.get("format") != PROBE_FORMAT:
        raise EngineError(f"'{file}' is a safetensors file but not a probe (format {header.get('format')!r}).")
    if int(header.get("format_version", "0")) > PROBE_VERSION:
        raise EngineError(f"The probe '{file}' was written by a newer version of the engine: update the engine.")
    try:
        arch = json.loads(header["architecture"])
        metadata = ProbeMetadata(**json.loads(header["probe"]))
        kinds = [arch.get("kind"), *(m.get("kind") for m in arch.get("members", []))]
        for kind in kinds:
            if kind not in STORED_KINDS:
                raise EngineError(
                    f"The probe '{file}' holds a {kind!r} classifier, which this engine does not "
                    f"know (it knows {', '.join(STORED_KINDS)}): update the engine or fit the probe again."
                )
        probe = rebuild_classifier(arch, tensors)
    except EngineError as exc:
        raise EngineError(f"{exc} (probe file '{file}')") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise EngineError(
            f"The probe file '{file}' is damaged ({type(exc).__name__}: {exc}): fit the probe again."
        ) from None
    return probe, metadata


def check_encoder(
    probe: Classifier, metadata: ProbeMetadata, encoder_hash: str, level: str, embed_dim: int, probe_path: str = ""
) -> None:
    """Refuse to apply a probe to embeddings of another encoder, level or width."""
    where = f"The probe '{probe_path}'" if probe_path else "The probe"
    if metadata.encoder_hash != encoder_hash:
        name = metadata.encoder.get("name") or "another encoder"
        raise EngineError(
            f"{where} was fitted on embeddings of {name} (hash {metadata.encoder_hash[:12]}), not of the "
            f"chosen model (hash {encoder_hash[:12]}): choose the model it was fitted with, or fit a new probe."
        )
    if metadata.level != level:
        raise EngineError(
            f"{where} was fitted on {metadata.level}-level embeddings, but these are {level}-level: compute the "
            f'embeddings with "outputs": {{"embeddings_level": "{metadata.level}"}} in the job, or fit a new probe.'
        )
    if probe.in_dim != embed_dim:
        raise EngineError(f"{where} expects {probe.in_dim}-wide embeddings but the model gives {embed_dim}.")
