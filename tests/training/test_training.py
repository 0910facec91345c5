"""CPU smoke runs of each objective, exact resume, and the failure modes a user meets."""

import json

import pytest
import torch

from engine.errors import EngineError
from engine.models.checkpoint import load_checkpoint
from tests.training.layouts import experiment, write_pastis, write_treesatai
from training.config import ExperimentConfig, from_dict, validate
from training.trainer import Trainer


def _config(tree) -> ExperimentConfig:
    config = from_dict(ExperimentConfig, tree)
    validate(config)
    return config


@pytest.fixture(scope="module")
def treesat(tmp_path_factory):
    return write_treesatai(tmp_path_factory.mktemp("TreeSat"), tiles=4, dates=(8, 6))


def _fixed_batch_losses(trainer: Trainer, steps: int) -> list[float]:
    batch = trainer.data.sampler.next(0)
    return [trainer.train_step(batch)["loss"] for _ in range(steps)]


def _series_only(root, **extra):
    return {"format": "treesatai", "root": str(root), "modalities": ["s2", "s1_asc"], "batch_size": 4, **extra}


@pytest.mark.slow
def test_omnisat_pretraining_loss_decreases_on_a_fixed_batch(treesat, tmp_path):
    torch.manual_seed(0)
    tree = experiment(tmp_path / "run", [_series_only(treesat)], pretrain={"mask_ratio": 0.5})
    trainer = Trainer(_config(tree))
    losses = _fixed_batch_losses(trainer, 6)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("objective", ["supervised", "probe"])
def test_multilabel_finetuning_and_probe(treesat, tmp_path, objective):
    tree = experiment(
        tmp_path / "run",
        [_series_only(treesat)],
        objective=objective,
        task={"kind": "multilabel", "metric": "weighted_f1"},
        optim={"lr": 1e-2},
    )
    trainer = Trainer(_config(tree))
    losses = _fixed_batch_losses(trainer, 5)
    assert losses[-1] < losses[0]
    metrics = trainer.evaluate(trainer.data.val)
    assert {"loss", "weighted_f1", "macro_f1"} <= set(metrics)
    if objective == "probe":
        assert all(not p.requires_grad for p in trainer.encoder.parameters())


def test_segmentation_with_ignore_label_on_pastis(tmp_path):
    root = write_pastis(tmp_path / "PASTIS", patches=4, size=8, dates=4)
    dataset = {"format": "pastis", "root": str(root), "modalities": ["s2", "s1_asc_ratio"], "batch_size": 1}
    tree = experiment(
        tmp_path / "run",
        [dataset],
        objective="supervised",
        preset="omnisat-pastis",
        task={"kind": "segmentation", "num_classes": 19, "ignore_index": 19, "metric": "miou"},
        optim={"lr": 1e-2},
    )
    trainer = Trainer(_config(tree))
    losses = _fixed_batch_losses(trainer, 5)
    assert losses[-1] < losses[0]
    assert "miou" in trainer.evaluate(trainer.data.val)


def test_full_run_writes_metrics_checkpoints_and_an_engine_model(treesat, tmp_path):
    out = tmp_path / "run"
    tree = experiment(
        out,
        [{"format": "treesatai", "root": str(treesat), "batch_size": 2}],
        train={"max_steps": 2, "checkpoint_every": 1, "eval_every": 2, "eval_batches": 1},
    )
    result = Trainer(_config(tree)).fit()
    assert result["steps"] == 2 and "loss" in result["val"]
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,split,metric,value" and any(",val,loss," in r for r in rows)
    loaded = load_checkpoint(out / "model.safetensors")
    assert set(loaded.model.modalities) == {"aerial", "s2", "s1_asc"}
    assert loaded.metadata["provenance"]["steps"] == 2


@pytest.mark.slow
def test_resume_gives_the_bit_identical_next_step(treesat, tmp_path):
    datasets = [_series_only(treesat, batch_size=2)]
    straight = Trainer(_config(experiment(tmp_path / "a", datasets, train={"max_steps": 4})))
    reference = [straight.train_step(straight.data.sampler.next(s))["loss"] for s in range(4)]

    first = Trainer(_config(experiment(tmp_path / "b", datasets, train={"max_steps": 2, "checkpoint_every": 2})))
    first.fit()
    resumed = Trainer(
        _config(experiment(tmp_path / "b", datasets, train={"max_steps": 4, "resume": str(tmp_path / "b")}))
    )
    assert resumed.step == 2
    # Steps 3 and 4 cross an epoch boundary (2 batches per epoch): the sampler position is restored too.
    again = [resumed.train_step(resumed.data.sampler.next(s))["loss"] for s in (2, 3)]
    assert again == reference[2:]


def test_resume_from_another_model_is_refused(treesat, tmp_path):
    datasets = [_series_only(treesat, batch_size=2)]
    Trainer(_config(experiment(tmp_path / "run", datasets, train={"max_steps": 1}))).fit()
    bigger = dict(experiment(tmp_path / "run", datasets, train={"resume": str(tmp_path / "run")}))
    bigger["model"]["overrides"] = {**bigger["model"]["overrides"], "depth": 2}
    with pytest.raises(EngineError, match="belongs to another model or objective.*architecture"):
        Trainer(_config(bigger))
    other = experiment(tmp_path / "run", datasets, objective="supervised", train={"resume": str(tmp_path / "run")})
    with pytest.raises(EngineError, match="objective: checkpoint 'omnisat' vs config 'supervised'"):
        Trainer(_config(other))


def test_crash_while_checkpointing_keeps_the_last_good_one(treesat, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(
        _config(experiment(out, [_series_only(treesat, batch_size=2)], train={"max_steps": 2, "checkpoint_every": 1}))
    )
    trainer.train_step(trainer.data.sampler.next(0))
    good = trainer.checkpoint()
    trainer.train_step(trainer.data.sampler.next(1))

    import training.state as state

    real = state.save_file

    def dies_halfway(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        if path.endswith("optimizer.safetensors"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(state, "save_file", dies_halfway)
    with pytest.raises(OSError):
        trainer.checkpoint()
    checkpoints = out / "checkpoints"
    assert json.loads((checkpoints / "latest.json").read_text())["path"] == good.name
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest.json", good.name]
    assert state.load_state(out).step == 1


def test_out_of_memory_names_the_batch_size_and_a_fix(treesat, tmp_path, monkeypatch):
    trainer = Trainer(_config(experiment(tmp_path / "run", [_series_only(treesat, batch_size=4)])))

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(trainer.encoder, "pretraining_loss", no_memory)
    with pytest.raises(EngineError, match=r"Out of memory .* batch of 4 tiles .* data.datasets.0.batch_size=2"):
        trainer.train_step(trainer.data.sampler.next(0))


def test_pretrain_command_rejects_a_finetune_config(tmp_path, treesat, capsys):
    import yaml

    from training.__main__ import main

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment(tmp_path / "run", [_series_only(treesat)], objective="supervised")))
    assert main(["pretrain", str(path)]) == 2
    assert "runs objectives omnisat or anysat" in capsys.readouterr().err
    assert main(["finetune", str(path), "optim.lrr=1"]) == 2
    assert "Unknown config key 'lrr'" in capsys.readouterr().err


TINY_ANYSAT = {
    "embed_dim": 32,
    "depth": 1,
    "heads": 2,
    "ltae_heads": 4,
    "ltae_key_dim": 4,
    "modalities": ["aerial", "s2", "s1_asc"],
}


@pytest.mark.slow
def test_anysat_jepa_pretraining_at_two_patch_sizes(treesat, tmp_path):
    torch.manual_seed(0)
    dataset = {
        "format": "treesatai",
        "root": str(treesat),
        "batch_size": 2,
        "patch_sizes_m": [10, 20],
        "modalities": ["aerial", "s2", "s1_asc"],
    }
    tree = experiment(tmp_path / "run", [dataset], objective="anysat", preset="anysat-tiny", overrides=TINY_ANYSAT)
    trainer = Trainer(_config(tree))
    assert {trainer.data.sampler.draw(s)[1] for s in range(20)} == {10.0, 20.0}
    losses = _fixed_batch_losses(trainer, 4)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    teacher = dict(trainer.objective.jepa.teacher.named_parameters())
    student = dict(trainer.objective.encoder.named_parameters())
    assert any(not torch.equal(teacher[k], student[k]) for k in student)  # EMA lags the student


def _write_series(folder, name, count, bands, value_range, gsd=10.0, size=60):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(len(name))
    files = []
    for t in range(count):
        path = folder / f"{name}_2020{3 + t:02d}15.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=bands,
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(500000, 5100000, gsd, gsd),
        ) as dst:
            dst.write(rng.uniform(*value_range, (bands, size, size)).astype("float32"))
        files.append(str(path))
    return files


@pytest.mark.slow
def test_user_rasters_through_the_engine_job_format(tmp_path):
    job = {
        "model": "not-trained-yet.safetensors",
        "outputs": {"embeddings": "embeddings.tif"},
        "modalities": {
            "s2": {"files": _write_series(tmp_path, "S2", 4, 10, (0, 5000))},
            "s1_asc": {"files": _write_series(tmp_path, "S1", 3, 2, (0.01, 0.3))},
        },
    }
    (tmp_path / "area.json").write_text(json.dumps(job))
    dataset = {"format": "rasters", "root": str(tmp_path / "area.json"), "batch_size": 2, "max_dates": 3}
    tree = experiment(tmp_path / "run", [dataset], train={"max_steps": 2})
    trainer = Trainer(_config(tree))
    batch = trainer.data.sampler.next(0)
    assert batch.inputs["s2"].shape == (2, 3, 10, 6, 6)  # 60 m tiles, at most 3 of 4 dates
    assert batch.dates["s1_asc"][0].tolist() == [75.0, 106.0, 136.0]  # 15 March, April, May 2020
    assert Trainer(_config(tree)).fit()["steps"] == 2
