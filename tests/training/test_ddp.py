"""DDP over 2 CPU processes (gloo) gives the gradients of one process on the same global batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from tests.training.layouts import experiment, write_treesatai
from training.config import ExperimentConfig, from_dict, validate


def _tree(root, out_dir):
    dataset = {"format": "treesatai", "root": str(root), "modalities": ["s2", "s1_asc"], "batch_size": 4}
    # BatchNorm statistics frozen: CPU has no SyncBatchNorm, and per-rank batch statistics
    # would differ from the global batch's by design.
    return experiment(
        out_dir,
        [dataset],
        objective="supervised",
        task={"kind": "multilabel"},
        train={"freeze_batchnorm": True, "max_steps": 1},
    )


def _gradients_after_one_step(tree, out_file):
    from training.trainer import Trainer

    config = from_dict(ExperimentConfig, tree)
    validate(config)
    torch.set_num_threads(1)
    trainer = Trainer(config)
    try:
        batch = trainer.data.sampler.next(0)
        trainer.train_step(batch)
        if trainer.dist.is_main:
            grads = {n: p.grad.detach().clone() for n, p in trainer.objective.named_parameters() if p.grad is not None}
            save_file(grads, str(out_file))
        return batch.size
    finally:
        trainer.close()


def _worker(rank, world, port, tree, out_file):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    assert _gradients_after_one_step(tree, out_file) == 4 // world


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    root = write_treesatai(tmp_path / "TreeSat", tiles=4, dates=(8, 6))
    single, double = tmp_path / "single.safetensors", tmp_path / "ddp.safetensors"
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert key not in os.environ
    _gradients_after_one_step(_tree(root, tmp_path / "one"), single)
    mp.spawn(_worker, args=(2, _free_port(), _tree(root, tmp_path / "two"), double), nprocs=2, join=True)
    one, two = load_file(str(single)), load_file(str(double))
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
