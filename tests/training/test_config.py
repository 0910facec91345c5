import pytest
import yaml

from engine.errors import EngineError
from training.config import ExperimentConfig, apply_override, load_config


def _write(tmp_path, tree):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


BASE = {"objective": "omnisat", "data": {"datasets": [{"format": "treesatai", "root": "/data/TreeSat"}]}}


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path):
    tree = {**BASE, "optim": {"lr": 1e-4, "weight_decy": 0.1}}
    with pytest.raises(EngineError, match=r"Unknown config key 'weight_decy' in config.optim.*'weight_decay'"):
        load_config(_write(tmp_path, tree))


def test_unknown_top_level_and_dataset_keys(tmp_path):
    with pytest.raises(EngineError, match="Unknown config key 'trainer'"):
        load_config(_write(tmp_path, {**BASE, "trainer": {}}))
    bad = {"objective": "omnisat", "data": {"datasets": [{"format": "treesatai", "root": "x", "batchsize": 3}]}}
    with pytest.raises(EngineError, match=r"config.data.datasets.0.*'batch_size'"):
        load_config(_write(tmp_path, bad))


def test_overrides_reach_nested_and_listed_keys(tmp_path):
    config = load_config(
        _write(tmp_path, BASE),
        [
            "optim.lr=3e-4",
            "data.datasets.0.batch_size=8",
            "train.compile=true",
            "data.datasets.0.patch_sizes_m=[10, 20]",
        ],
    )
    assert isinstance(config, ExperimentConfig)
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.data.datasets[0].batch_size == 8
    assert config.train.compile is True
    assert config.data.datasets[0].patch_sizes_m == [10.0, 20.0]
    assert config.data.datasets[0].name == "treesatai"


def test_bad_values_are_named(tmp_path):
    with pytest.raises(EngineError, match="train.max_steps must be a number"):
        load_config(_write(tmp_path, BASE), ["train.max_steps=many"])
    with pytest.raises(EngineError, match="objective is 'mae'"):
        load_config(_write(tmp_path, BASE), ["objective=mae"])
    with pytest.raises(EngineError, match="must look like key=value"):
        load_config(_write(tmp_path, BASE), ["optim.lr"])
    with pytest.raises(EngineError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_override_index_out_of_range():
    tree = {"data": {"datasets": [{"format": "treesatai"}]}}
    with pytest.raises(EngineError, match="items 0..0"):
        apply_override(tree, "data.datasets.3.root=x")


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))
    assert configs, "training/configs holds no YAML file"
    for path in configs:
        load_config(path)
