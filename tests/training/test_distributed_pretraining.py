"""Pretraining over 2 CPU processes (gloo): contrastive negatives gathered across ranks, the whole loop via torchrun."""

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from engine.models.losses import patch_contrastive_loss
from tests.training.layouts import experiment, write_treesatai

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tokens() -> torch.Tensor:
    """(M=3 modalities, B=6 tiles, P=4 patches, D=8): the global batch."""
    return torch.randn(3, 6, 4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _rank_loss(rank, world, port, folder):
    import torch.distributed as torch_dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        share = _tokens().shape[1] // world
        local = _tokens()[:, rank * share : (rank + 1) * share].clone().requires_grad_(True)
        loss = patch_contrastive_loss(local, temperature=0.2)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": local.grad}, Path(folder) / f"rank{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_two_ranks_give_the_contrastive_loss_and_gradients_of_one_process(tmp_path):
    tokens = _tokens().requires_grad_(True)
    single = patch_contrastive_loss(tokens, temperature=0.2)
    single.backward()
    mp.spawn(_rank_loss, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # the mean of the ranks' losses (what DDP's gradient averaging minimises) is the global batch's loss
    torch.testing.assert_close(
        (ranks[0]["loss"] + ranks[1]["loss"]) / 2, single.detach(), rtol=1e-6, atol=1e-7
    )  # float32 inside
    # per-rank negatives would give another loss: the gather is what makes them equal
    alone = patch_contrastive_loss(_tokens()[:, :3], temperature=0.2)
    assert abs(float(alone) - float(ranks[0]["loss"])) > 1e-3
    # each rank's tokens get the gradient of every rank's loss; DDP divides by the world size
    grad = torch.cat([ranks[0]["grad"], ranks[1]["grad"]], dim=1) / 2
    torch.testing.assert_close(grad, tokens.grad, rtol=1e-5, atol=1e-7)


def _metrics(path: Path, step: int) -> dict[str, float]:
    with open(path) as f:
        return {
            row["metric"]: float(row["value"])
            for row in csv.DictReader(f)
            if row["split"] == "train" and int(row["step"]) == step
        }


@pytest.mark.slow
def test_torchrun_pretraining_loop_on_two_processes(tmp_path):
    """``torchrun --nproc-per-node 2 -m training pretrain``: the whole loop (data, DDP, checkpoints, export);
    its first step's contrastive loss is that of one process on the same global batch of 4 tiles."""
    root = write_treesatai(tmp_path / "TreeSat", tiles=4, dates=(8, 6))
    dataset = {"format": "treesatai", "root": str(root), "modalities": ["s2", "s1_asc"], "batch_size": 4}
    configs = {}
    for name in ("one", "two"):
        # BatchNorm statistics frozen: per-rank batch statistics differ from the global batch's by design
        tree = experiment(
            tmp_path / name,
            [dataset],
            train={"max_steps": 2, "checkpoint_every": 1, "threads": 1, "freeze_batchnorm": True},
        )
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(tree))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    one = subprocess.run(
        [sys.executable, "-m", "training", "pretrain", str(configs["one"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    two = subprocess.run(
        [torchrun, "--nnodes", "1", "--nproc-per-node", "2", "-m", "training", "pretrain", str(configs["two"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "model.safetensors").is_file()
    first, second = _metrics(tmp_path / "one" / "metrics.csv", 1), _metrics(tmp_path / "two" / "metrics.csv", 1)
    assert second["contrastive"] == pytest.approx(first["contrastive"], rel=1e-5)
    assert _metrics(tmp_path / "two" / "metrics.csv", 2)["loss"] > 0
