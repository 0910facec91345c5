"""Which batch comes next: per-dataset streams and AnySat's multi-dataset draw.

Each step draws one dataset (by weight), then a patch size from that dataset's
allowed set, then a batch from the dataset's stream. The draws are a function
of (seed, step) only, so every DDP rank picks the same dataset and patch size,
and a resumed run continues with exactly the draws it would have made.

A stream walks its dataset in the order of a DistributedSampler (each rank its
share of every global batch), and remembers (epoch, batches consumed) for
resumption.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from engine.errors import EngineError
from training.datasets.common import Batch, TileDataset, collate


def item_seed(seed: int, epoch: int, index: int) -> int:
    # Fixed per (run seed, epoch, item): date subsets and crops change every epoch
    # but never depend on worker scheduling.
    return (seed * 1_000_003 + epoch * 7_919 + index) % (2**63)


class BatchStream:
    def __init__(
        self,
        dataset: TileDataset,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        num_workers: int = 0,
        limit_samples: int = 0,
        name: str = "",
    ):
        if global_batch % world:
            raise EngineError(
                f"The batch size {global_batch} of dataset {name!r} must be a multiple of the {world} processes."
            )
        self.dataset, self.name, self.seed = dataset, name, seed
        self.batch = global_batch // world
        self.num_workers = num_workers
        self.sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=world > 1
        )
        per_rank = len(self.sampler) if not limit_samples else min(len(self.sampler), limit_samples // world)
        self.per_rank = per_rank
        self.batches_per_epoch = per_rank // self.batch
        if self.batches_per_epoch == 0:
            raise EngineError(
                f"Dataset {name!r} has {len(dataset)} samples: fewer than one batch of {global_batch}. "
                "Lower data.datasets[].batch_size."
            )
        self.epoch, self.position = 0, 0
        self._iterator: Iterator[Batch] | None = None

    def _batches(self, partial: bool = False) -> Iterator[Batch]:
        """The epoch's batches from the current position; ``partial`` keeps a last, smaller batch."""
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)[: self.per_rank]
        count = -(-self.per_rank // self.batch) if partial else self.batches_per_epoch
        keys = [
            [(i, item_seed(self.seed, self.epoch, i)) for i in order[b * self.batch : (b + 1) * self.batch]]
            for b in range(self.position, count)
        ]
        if self.num_workers == 0:
            return (collate([self.dataset[k] for k in batch_keys]) for batch_keys in keys)
        return iter(
            DataLoader(
                self.dataset,
                batch_sampler=keys,
                collate_fn=collate,
                num_workers=self.num_workers,
                persistent_workers=False,
            )
        )

    def next(self) -> Batch:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._iterator = self._batches()
        batch = next(self._iterator)
        self.position += 1
        batch.dataset = self.name
        return batch

    def epoch_batches(self) -> Iterator[Batch]:
        """One full pass in sampler order, every sample included (evaluation); keeps the training position."""
        saved = (self.epoch, self.position, self._iterator)
        self.epoch, self.position = 0, 0
        try:
            for batch in self._batches(partial=True):
                batch.dataset = self.name
                yield batch
        finally:
            self.epoch, self.position, self._iterator = saved

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self._iterator = int(state["epoch"]), int(state["position"]), None


@dataclass
class DatasetChoice:
    stream: BatchStream
    weight: float
    patch_sizes_m: list[float]


class MultiDatasetSampler:
    """One dataset, then one patch size, then one batch, per step."""

    def __init__(self, choices: dict[str, DatasetChoice], seed: int):
        self.choices, self.seed = choices, seed
        self.names = list(choices)
        self.weights = torch.tensor([choices[n].weight for n in self.names], dtype=torch.float64)
        if (self.weights <= 0).any():
            raise EngineError("Every dataset weight (data.datasets[].weight) must be positive.")

    def draw(self, step: int) -> tuple[str, float | None]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        name = self.names[int(torch.multinomial(self.weights, 1, generator=generator))]
        sizes = self.choices[name].patch_sizes_m
        size = sizes[int(torch.randint(len(sizes), (1,), generator=generator))] if sizes else None
        return name, size

    def next(self, step: int) -> Batch:
        name, size = self.draw(step)
        batch = self.choices[name].stream.next()
        batch.patch_size_m = size
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {name: choice.stream.state_dict() for name, choice in self.choices.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.choices) - set(state)
        if missing:
            raise EngineError(f"The checkpoint has no sampler state for dataset(s) {', '.join(sorted(missing))}.")
        for name, choice in self.choices.items():
            choice.stream.load_state_dict(state[name])
