"""The training loop shared by pretrain, finetune and evaluate.

One step: draw (dataset, patch size, batch), normalize with the model's
statistics, forward under autocast (bf16 on GPUs / AMX CPUs), backward, clip,
optimizer and scheduler steps, EMA update. Rank 0 logs, evaluates, writes
checkpoints every ``train.checkpoint_every`` steps and exports the final model
as an engine checkpoint (``<out_dir>/model.safetensors``) the plugin can load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.errors import EngineError
from engine.models.base import EOModel
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.models.modalities import sensor
from engine.models.registry import build_model, preset
from engine.runtime import distributed
from engine.runtime.precision import autocast_context, choose_dtype
from engine.runtime.progress import Reporter
from training.config import ExperimentConfig
from training.datasets import TileDataset, open_dataset
from training.datasets.common import Batch
from training.logs import MetricsLog, Progress
from training.metrics import MetricAccumulator
from training.objectives import Objective, build_objective
from training.sampling import BatchStream, DatasetChoice, MultiDatasetSampler
from training.state import TrainingState, check_identity, load_state, rng_state, save_state, set_rng_state


# ----- model -------------------------------------------------------------------------------
def model_config(config: ExperimentConfig) -> Any:
    """The preset's architecture config with the experiment's overrides applied."""
    base = preset(config.model.preset).builder()
    overrides = dict(config.model.overrides)
    names = {f.name for f in dataclasses.fields(base)}
    if config.objective == "omnisat":
        overrides.setdefault("mask_ratio", config.pretrain.mask_ratio)
        overrides.setdefault("temperature", config.pretrain.temperature)
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise EngineError(
            f"model.overrides has unknown key(s) {', '.join(unknown)} for preset {config.model.preset!r}; "
            f"allowed: {', '.join(sorted(names))}."
        )
    if "modalities" in overrides:
        chosen = list(overrides["modalities"])
        overrides["modalities"] = tuple(sensor(n) if isinstance(n, str) else n for n in chosen)
        if "projectors" in names and "projectors" not in overrides:
            overrides["projectors"] = {n: base.projectors[n] for n in chosen}
    for key, value in overrides.items():
        if isinstance(value, list):
            overrides[key] = tuple(value)
    try:
        return dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"model.overrides do not fit preset {config.model.preset!r}: {exc}") from None


def build_encoder(config: ExperimentConfig) -> tuple[EOModel, nn.Module | None]:
    """The model (and the head saved with it, if any) to start from."""
    if config.model.init_from:
        loaded = load_checkpoint(config.model.init_from)
        return loaded.model, loaded.head
    return build_model(model_config(config)), None


def architecture_hash(model: EOModel) -> str:
    return hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----- data --------------------------------------------------------------------------------
@dataclass
class Data:
    sampler: MultiDatasetSampler | None
    val: dict[str, BatchStream]
    datasets: dict[str, TileDataset]


def _split(config: ExperimentConfig, split: str, ds_config) -> str:
    return {"train": ds_config.train_split, "val": ds_config.val_split, "test": ds_config.test_split}[split]


def open_data(
    config: ExperimentConfig,
    encoder: EOModel,
    dist: distributed.Distributed,
    splits: Iterable[str] = ("train", "val"),
    reporter: Reporter | None = None,
) -> Data:
    bands = {name: spec.n_bands for name, spec in encoder.modalities.items()}
    segmentation = config.task.kind == "segmentation" and config.objective in ("supervised", "probe")
    choices, val, datasets = {}, {}, {}
    for ds in config.data.datasets:
        chosen = dataclasses.replace(ds, modalities=ds.modalities or _default_modalities(ds.format, encoder))
        foreign = [m for m in chosen.modalities if m not in encoder.modalities]
        if foreign:
            raise EngineError(
                f"Dataset {ds.name!r} gives modality {', '.join(foreign)} that the model "
                f"{config.model.preset!r} lacks (it has {', '.join(encoder.modalities)})."
            )
        for split in splits:
            shuffle = split == "train"
            dataset = open_dataset(
                chosen,
                _split(config, split, ds),
                train=shuffle,
                bands=bands,
                segmentation=segmentation,
                model=encoder,
                reporter=reporter,
            )
            stream = BatchStream(
                dataset,
                ds.batch_size,
                seed=config.train.seed,
                rank=dist.rank,
                world=dist.world,
                shuffle=shuffle,
                num_workers=config.data.num_workers,
                limit_samples=config.data.limit_samples,
                name=ds.name,
            )
            if split == "train":
                choices[ds.name] = DatasetChoice(stream, ds.weight, ds.patch_sizes_m)
                datasets[ds.name] = dataset
            else:
                val[ds.name] = stream
                datasets.setdefault(ds.name, dataset)
    sampler = MultiDatasetSampler(choices, config.train.seed) if choices else None
    return Data(sampler, val, datasets)


def _default_modalities(fmt: str, encoder: EOModel) -> list[str]:
    from training.datasets.flair import Flair  # lazy: keeps rasterio out of this module
    from training.datasets.pastis import Pastis  # lazy: keeps rasterio out of this module
    from training.datasets.treesatai import TreeSatAI  # lazy: keeps rasterio out of this module

    readers = {"treesatai": TreeSatAI, "pastis": Pastis, "flair": Flair}
    if fmt not in readers:
        return list(encoder.modalities)
    return [m for m in encoder.modalities if m in readers[fmt].available]


def prepare(batch: Batch, encoder: EOModel, device: torch.device) -> Batch:
    batch = batch.to(device)
    batch.inputs = {name: encoder.normalize(name, x) for name, x in batch.inputs.items()}
    return batch


# ----- optimization ------------------------------------------------------------------------
def build_optimizer(config: ExperimentConfig, objective: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise EngineError("Nothing to train: every parameter is frozen.")
    o = config.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.betas[0], weight_decay=o.weight_decay)


def build_scheduler(config: ExperimentConfig, optimizer: torch.optim.Optimizer):
    o, total = config.optim, config.train.max_steps
    if o.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=o.plateau_factor, patience=o.plateau_patience
        )
    floor = o.min_lr / o.lr if o.lr > 0 else 0.0

    def factor(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        progress = min((step - o.warmup_steps) / max(total - o.warmup_steps, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def oom_error(batch: Batch, device: torch.device, config: ExperimentConfig) -> EngineError:
    ds = next((d for d in config.data.datasets if d.name == batch.dataset), config.data.datasets[0])
    index = config.data.datasets.index(ds)
    smaller = max(ds.batch_size // 2, 1)
    return EngineError(
        f"Out of memory on {device} with a batch of {ds.batch_size} tiles from dataset {ds.name!r} "
        f"(patch size {batch.patch_size_m or 'default'} m, {batch.size} tiles on this process). "
        f"Lower the batch size, e.g. data.datasets.{index}.batch_size={smaller}, or data.datasets.{index}.max_dates, "
        "or use a smaller model preset. The last checkpoint was not touched."
    )


# ----- the run ---------------------------------------------------------------------------
class Trainer:
    def __init__(
        self,
        config: ExperimentConfig,
        reporter: Reporter | None = None,
        command: str = "",
        splits: tuple[str, ...] = ("train", "val"),
    ):
        self.config, self.reporter, self.command = config, reporter or Reporter(), command
        self.dist = distributed.setup(config.train.device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.train.seed + self.dist.rank)
        self.device = self.dist.device
        self.dtype = choose_dtype(self.device, config.train.precision)
        self.out_dir = Path(config.train.out_dir).expanduser()
        encoder, loaded_head = build_encoder(config)
        self.encoder = encoder.to(self.device)
        self.data = open_data(config, self.encoder, self.dist, splits, self.reporter)
        first = next(iter(self.data.datasets.values()))
        self.class_names = list(first.class_names)
        num_classes = config.task.num_classes or len(self.class_names)
        self.objective: Objective = build_objective(config, self.encoder, num_classes).to(self.device)
        if config.task.kind == "segmentation" and self.objective.head() is not None:
            head = self.objective.head().config
            self.reporter.log(
                f"Segmentation head: {head.kind} ({head.embed_dim} features -> {head.n_classes} classes"
                f"{', encoder frozen' if self.objective.freeze else ''})."
            )
        if loaded_head is not None and self.objective.head() is not None:
            self._load_head(loaded_head)
        if config.train.freeze_batchnorm:
            for module in self.objective.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.requires_grad_(False)
        self.optimizer = build_optimizer(config, self.objective)
        self.scheduler = build_scheduler(config, self.optimizer)
        self.step = 0
        self.identity = {
            "preset": config.model.preset,
            "objective": config.objective,
            "architecture": architecture_hash(self.encoder),
            "modalities": sorted(self.encoder.modalities),
        }
        if config.train.resume:
            if self.data.sampler is not None:
                self._resume(config.train.resume)
            else:
                self.load_weights(config.train.resume)
        self.model: nn.Module = self.objective
        if self.dist.enabled:
            self.model = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if config.train.compile:
            self.model = torch.compile(self.model)

    # -- state --
    def _load_head(self, head: nn.Module) -> None:
        mine = self.objective.head()
        if mine.config != head.config:
            raise EngineError(
                f"The head saved in '{self.config.model.init_from}' ({head.config.n_classes} classes, "
                f"{head.config.kind}) does not match task ({mine.config.n_classes} classes, {mine.config.kind})."
            )
        mine.load_state_dict(head.state_dict())

    def load_weights(self, path: str) -> TrainingState:
        """Weights of a training checkpoint, after checking it belongs to this model and objective."""
        state = load_state(path)
        check_identity(state.identity, self.identity, path)
        differs = set(self.objective.state_dict()) ^ set(state.weights)
        if differs:
            raise EngineError(
                f"The checkpoint '{path}' does not hold this objective's weights "
                f"(differs on {', '.join(sorted(differs)[:3])})."
            )
        self.objective.load_state_dict(state.weights)
        return state

    def _resume(self, path: str) -> None:
        state = self.load_weights(path)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.data.sampler.load_state_dict(state.sampler)
        set_rng_state(state.rng)
        self.step = state.step
        self.reporter.log(f"Resumed from '{path}' at step {state.step}.")

    def checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        state = TrainingState(
            step=self.step,
            weights=self.objective.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            sampler=self.data.sampler.state_dict(),
            rng=rng_state(),
            identity=self.identity,
            extra={"config": self.config.to_dict(), "command": self.command},
        )
        return save_state(self.out_dir, state, self.config.train.keep_checkpoints)

    # -- steps --
    def _set_train_mode(self) -> None:
        self.objective.train()
        if self.config.train.freeze_batchnorm:
            for module in self.objective.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self, batch: Batch) -> dict[str, float]:
        self._set_train_mode()
        batch = prepare(batch, self.encoder, self.device)
        try:
            with autocast_context(self.device, self.dtype):
                out = self.model(batch)
            if not torch.isfinite(out.loss):
                raise EngineError(
                    f"The loss became {float(out.loss)} at step {self.step + 1}: lower optim.lr "
                    f"(now {self.config.optim.lr:g}) or check the inputs' normalization statistics."
                )
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.objective.parameters() if p.requires_grad],
                self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else float("inf"),
            )
            self.optimizer.step()
        except BaseException as exc:
            if _is_oom(exc):
                raise oom_error(batch, self.device, self.config) from None
            raise
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        self.step += 1
        self.objective.after_step(self.step, self.config.train.max_steps)
        terms = {"loss": out.loss.detach(), **out.logs}
        if self.dist.enabled:  # the figures of the global batch: each rank's loss averages its own share
            stacked = torch.stack([v.float().reshape(()) for v in terms.values()])
            torch.distributed.all_reduce(stacked)
            terms = dict(zip(terms, stacked / self.dist.world))
        logs = {"loss": float(terms.pop("loss")), "grad_norm": float(norm), "lr": self.optimizer.param_groups[0]["lr"]}
        logs.update({k: float(v) for k, v in terms.items()})
        return logs

    @torch.no_grad()
    def evaluate(self, split_streams: dict[str, BatchStream], max_batches: int = 0) -> dict[str, float]:
        """Mean loss and, for supervised objectives, the task metrics, over each stream."""
        self.objective.eval()
        results: dict[str, float] = {}
        task = self.config.task
        for name, stream in split_streams.items():
            total, count = torch.zeros(2, dtype=torch.float64), 0
            metric = None
            if self.config.objective in ("supervised", "probe"):
                metric = MetricAccumulator(
                    task.kind, self.objective.classifier.config.n_classes, task.ignore_index, task.threshold
                )
            ds = next(d for d in self.config.data.datasets if d.name == name)
            for i, batch in enumerate(stream.epoch_batches()):
                if max_batches and i >= max_batches:
                    break
                batch.patch_size_m = ds.patch_sizes_m[0] if ds.patch_sizes_m else None
                batch = prepare(batch, self.encoder, self.device)
                with autocast_context(self.device, self.dtype):
                    out = self.objective(batch)
                total += torch.tensor([float(out.loss) * batch.size, batch.size], dtype=torch.float64)
                count += 1
                if metric is not None:
                    metric.update(out.logits, batch.label)
            if self.dist.enabled:
                torch.distributed.all_reduce(total)
            prefix = f"{name}." if len(split_streams) > 1 else ""
            results[f"{prefix}loss"] = float(total[0] / max(total[1], 1))
            if metric is not None:
                metric.all_reduce()
                results.update({f"{prefix}{k}": v for k, v in metric.compute().items()})
        return results

    def fit(self) -> dict[str, Any]:
        cfg = self.config.train
        log = MetricsLog(self.out_dir, enabled=self.dist.is_main, resume_step=self.step if cfg.resume else None)
        progress = Progress(cfg.max_steps, self.step, enabled=cfg.progress and self.dist.is_main)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        last: dict[str, float] = {}
        val: dict[str, float] = {}
        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        window: list[float] = []
        started = last_checkpoint = time.perf_counter()
        first_step, samples = self.step, 0
        budget_s = 60 * cfg.max_minutes
        try:
            while self.step < cfg.max_steps:
                batch = self.data.sampler.next(self.step)
                last = self.train_step(batch)
                samples += batch.size * self.dist.world
                window.append(last["loss"])
                out_of_time = budget_s > 0 and self._agreed(time.perf_counter() - started >= budget_s)
                at_log = self.step % cfg.log_every == 0 or self.step == cfg.max_steps or out_of_time
                rate = progress.update(self.step, batch.size * self.dist.world, last, force=at_log)
                if at_log:
                    log.write(self.step, "train", {**last, "samples_per_s": rate})
                    done = (self.step - first_step) / max(cfg.max_steps - first_step, 1)
                    if budget_s:
                        done = max(done, (time.perf_counter() - started) / budget_s)
                    self.reporter.progress(
                        100 * min(done, 1.0), f"step {self.step}: loss {last['loss']:.4g}, {rate:.1f} samples/s"
                    )
                at_eval = cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.max_steps)
                if at_eval and self.data.val:
                    val = self.evaluate(self.data.val, cfg.eval_batches)
                    log.write(self.step, "val", val)
                    if plateau:
                        self.scheduler.step(val[next(k for k in val if k.endswith("loss"))])
                elif plateau and at_log:
                    # Without validation, the plateau schedule follows the mean training loss.
                    self.scheduler.step(sum(window) / len(window))
                if at_log:
                    window = []
                overdue = cfg.checkpoint_minutes and self._agreed(
                    time.perf_counter() - last_checkpoint >= 60 * cfg.checkpoint_minutes
                )
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps or out_of_time or overdue:
                    self.checkpoint()
                    last_checkpoint = time.perf_counter()
                if out_of_time:
                    self.reporter.log(f"Time budget of {cfg.max_minutes:g} min reached at step {self.step}.")
                    break
        finally:
            progress.close()
            log.close()
        elapsed = time.perf_counter() - started
        exported = self.export() if self.dist.is_main else None
        result = {
            "steps": self.step,
            "final": last,
            "val": val,
            "out_dir": str(self.out_dir),
            "samples_per_s": samples / elapsed if elapsed > 0 else 0.0,
            "model": str(exported) if exported else None,
        }
        self.dist.barrier()
        return result

    def _agreed(self, flag: bool) -> bool:
        """A time-based decision every process takes together (clocks differ across ranks)."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def export(self, path: Path | None = None, provenance: dict[str, Any] | None = None) -> Path:
        """The trained model (+ head) as an engine checkpoint the plugin loads (``provenance``: further
        entries of its record)."""
        head = self.objective.head()
        path = path or self.out_dir / "model.safetensors"
        provenance = {
            "trained_with": "python -m training",
            "command": self.command,
            "steps": self.step,
            "objective": self.config.objective,
            "datasets": [{"name": d.name, "format": d.format} for d in self.config.data.datasets],
            **(provenance or {}),
        }
        named = head is not None and len(self.class_names) == head.config.n_classes
        save_checkpoint(
            path, self.encoder, head=head, classes=self.class_names if named else None, provenance=provenance
        )
        return path

    def close(self) -> None:
        distributed.teardown(self.dist)
