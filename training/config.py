"""Experiment configs: small YAML files mapped onto typed dataclasses.

Every key is checked (engine.convert, the engine's one converter): an unknown key (a typo, a key of another section) is an
error naming the key, where it was found and the keys that are allowed there,
so that a misspelt setting never silently falls back to its default.
Command-line overrides use dotted paths (``optim.lr=3e-4``,
``data.datasets.0.batch_size=8``); values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.convert import from_dict
from engine.errors import EngineError

DATASET_FORMATS = ("treesatai", "pastis", "flair", "rasters")
OBJECTIVES = ("omnisat", "anysat", "universat", "supervised", "probe")
TASKS = ("multilabel", "multiclass", "segmentation")
SEGMENTATION_HEADS = ("auto", "dense", "patch")
METRICS = ("weighted_f1", "macro_f1", "micro_f1", "overall_accuracy", "miou")


@dataclass
class DatasetConfig:
    """One dataset in its official on-disk layout (or a user's rasters)."""

    format: str
    root: str
    name: str = ""
    modalities: list[str] = field(default_factory=list)
    # Patch sizes (metres) drawn per step: AnySat trains every dataset at several scales.
    patch_sizes_m: list[float] = field(default_factory=list)
    batch_size: int = 16
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    max_dates: int = 50
    # Draw weight of this dataset in multi-dataset training.
    weight: float = 1.0
    # Dataset-specific switches (documented in each reader), e.g. PASTIS folds.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    datasets: list[DatasetConfig] = field(default_factory=list)
    num_workers: int = 0
    # Stop an epoch early (smoke runs on big datasets); 0 = the whole split.
    limit_samples: int = 0


@dataclass
class ModelConfig:
    preset: str = "omnisat-treesatai"
    # Keyword overrides of the preset's architecture config (e.g. depth, embed_dim).
    overrides: dict[str, Any] = field(default_factory=dict)
    # Start from these weights (a checkpoint written by `export` or the engine).
    init_from: str = ""


@dataclass
class TaskConfig:
    """Supervised fine-tuning / probe evaluation target."""

    kind: str = "multilabel"
    num_classes: int = 0
    ignore_index: int = -100
    metric: str = "weighted_f1"
    # Segmentation head: "dense" (per sub-patch, AnySat), "patch" (per patch, any model),
    # "auto" = dense where the model gives dense features, else patch.
    head: str = "auto"
    # Freeze the encoder (linear probing) and train only the head.
    freeze_encoder: bool = False
    threshold: float = 0.5


@dataclass
class PretrainConfig:
    mask_ratio: float = 0.75
    temperature: float = 0.1
    contrastive_weight: float = 1.0
    reconstruction_weight: float = 1.0
    ema_start: float = 0.996
    ema_end: float = 1.0
    date_dropout: float = 0.5


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "constant"  # constant | cosine | plateau
    warmup_steps: int = 0
    min_lr: float = 0.0
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    out_dir: str = "runs/experiment"
    max_steps: int = 1000
    seed: int = 32
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 0
    checkpoint_every: int = 500
    # Also stop (checkpointed, exported) once this many minutes of training have passed; 0: steps only.
    max_minutes: float = 0.0
    # Also checkpoint when this many minutes passed since the last checkpoint (a cancel loses no more); 0: steps only.
    checkpoint_minutes: float = 0.0
    keep_checkpoints: int = 3
    resume: str = ""
    threads: int = 0
    # BatchNorm statistics frozen (eval mode): small batches, or exact DDP parity on CPU.
    freeze_batchnorm: bool = False
    progress: bool = True


@dataclass
class ExperimentConfig:
    objective: str = "omnisat"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override to a raw config mapping."""
    if "=" not in override:
        raise EngineError(f"Override {override!r} must look like key=value (e.g. optim.lr=3e-4).")
    path, raw = override.split("=", 1)
    parts = path.strip().split(".")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: Any = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "config"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise EngineError(f"Override {override!r}: {where} has items 0..{len(node) - 1}, not {part!r}.")
            key: Any = int(part)
        else:
            key = part
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply overrides, validate everything."""
    tree: dict[str, Any] = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise EngineError(f"The config file '{file}' does not exist: give a YAML file (see training/configs/).")
        try:
            tree = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise EngineError(f"The config file '{file}' is not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise EngineError(f"The config file '{file}' must hold a mapping of sections (model:, data:, ...).")
    for override in overrides:
        apply_override(tree, override)
    config = from_dict(ExperimentConfig, tree, "config")
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    def choice(value: str, allowed: tuple[str, ...], key: str) -> None:
        if value not in allowed:
            raise EngineError(f"Config key {key} is {value!r}; choose one of: {', '.join(allowed)}.")

    choice(config.objective, OBJECTIVES, "objective")
    choice(config.task.kind, TASKS, "task.kind")
    choice(config.task.metric, METRICS, "task.metric")
    choice(config.task.head, SEGMENTATION_HEADS, "task.head")
    if config.task.head != "auto" and config.task.kind != "segmentation":
        raise EngineError(
            f"Config key task.head={config.task.head} chooses a segmentation head, but task.kind is "
            f"{config.task.kind!r} (a tile head): remove task.head or set task.kind=segmentation."
        )
    choice(config.optim.name, ("adam", "adamw", "sgd"), "optim.name")
    choice(config.optim.schedule, ("constant", "cosine", "plateau"), "optim.schedule")
    if not config.data.datasets:
        raise EngineError("Config key data.datasets is empty: list at least one dataset (format, root).")
    for i, ds in enumerate(config.data.datasets):
        choice(ds.format, DATASET_FORMATS, f"data.datasets.{i}.format")
        if ds.batch_size < 1:
            raise EngineError(f"Config key data.datasets.{i}.batch_size must be at least 1.")
        if ds.max_dates < 1:
            raise EngineError(f"Config key data.datasets.{i}.max_dates must be at least 1.")
        if any(p <= 0 for p in ds.patch_sizes_m):
            raise EngineError(f"Config key data.datasets.{i}.patch_sizes_m must hold positive sizes in metres.")
        if not ds.name:
            ds.name = ds.format if sum(d.format == ds.format for d in config.data.datasets) == 1 else f"{ds.format}{i}"
    if not 0.0 <= config.pretrain.mask_ratio < 1.0:
        raise EngineError("Config key pretrain.mask_ratio must be in [0, 1).")
    if config.train.max_steps < 1:
        raise EngineError("Config key train.max_steps must be at least 1.")
    if config.train.max_minutes < 0 or config.train.checkpoint_minutes < 0:
        raise EngineError("Config keys train.max_minutes and train.checkpoint_minutes must be >= 0 (0: off).")
