"""Probes: fitting recovers a known rule, splits never leak, metrics, file round trip, encoder checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.probes.classifiers import ProbeConfig, fit_probe
from engine.probes.classifiers.neural import class_weights
from engine.probes.folds import blocked_folds, spatial_units
from engine.probes.metrics import classification_metrics, confusion_matrix
from engine.probes.probe_file import (
    ProbeMetadata,
    check_encoder,
    default_colors,
    load_probe,
    save_probe,
)

torch.set_num_threads(1)


def linear_rule_data(n: int, dim: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dim, classes))
    x = rng.normal(size=(n, dim)).astype(np.float32) * 3.0 + 5.0  # off-centre and scaled: tests standardization
    return x, (x @ weights).argmax(1)


@pytest.mark.parametrize(
    "config",
    [
        ProbeConfig(),
        ProbeConfig(optimizer="adam", epochs=60, l2=1e-4),
        ProbeConfig(kind="mlp", optimizer="adam", epochs=60, hidden=32, l2=1e-5),
    ],
)
def test_probe_recovers_a_known_linear_rule(config):
    x, y = linear_rule_data(2000)
    probe = fit_probe(x[:1500], y[:1500], 4, config)
    accuracy = (probe.predict(x[1500:]) == y[1500:]).mean()
    assert accuracy > 0.93, accuracy


def test_class_weighting_helps_a_rare_class():
    rng = np.random.default_rng(1)
    common = rng.normal(0.0, 1.0, size=(2000, 2))
    rare = rng.normal(1.5, 1.0, size=(40, 2))
    x = np.concatenate([common, rare]).astype(np.float32)
    y = np.r_[np.zeros(2000, int), np.ones(40, int)]
    recall = {}
    for weighting in (False, True):
        probe = fit_probe(x, y, 2, ProbeConfig(class_weighting=weighting))
        recall[weighting] = (probe.predict(x[y == 1]) == 1).mean()
    assert recall[True] > recall[False] + 0.3
    assert torch.allclose(class_weights(y, 3), torch.tensor([2040 / 4000, 2040 / 80, 0.0]))


def test_fit_refuses_nan_embeddings():
    x, y = linear_rule_data(50)
    x[3, 2] = np.nan
    with pytest.raises(EngineError, match="NaN"):
        fit_probe(x, y, 4)


@settings(max_examples=60, deadline=None)
@given(
    n_units=st.integers(5, 40),
    n_classes=st.integers(2, 5),
    n_folds=st.integers(2, 5),
    seed=st.integers(0, 10_000),
)
def test_blocked_folds_never_split_a_unit(n_units, n_classes, n_folds, seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, n_units)
    units = np.repeat(np.arange(n_units), sizes)
    y = np.repeat(rng.integers(0, n_classes, n_units), sizes)
    folds = blocked_folds(y, units, n_folds, seed)
    for u in range(n_units):
        assert np.unique(folds[units == u]).size == 1
    assert set(np.unique(folds)) <= set(range(n_folds))


def test_points_are_grouped_in_spatial_blocks():
    rows = np.array([0, 1, 2, 10, 11, 25])
    cols = np.array([0, 3, 4, 0, 1, 25])
    groups = np.arange(6)
    units = spatial_units(groups, np.ones(6, bool), rows, cols, block_cells=5)
    assert units[0] == units[1] == units[2]  # one 5 x 5 block
    assert units[3] == units[4] != units[0]
    assert len(set(units)) == 3
    # Polygon cells keep their polygon, whatever the blocks.
    mixed = spatial_units(np.array([7, 7, 9]), np.zeros(3, bool), rows[:3], cols[:3], block_cells=1)
    assert mixed[0] == mixed[1] != mixed[2]


def test_too_few_units_for_the_folds():
    with pytest.raises(EngineError, match="fewer than the 5 folds"):
        blocked_folds(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), 5)


def test_metrics_match_scikit_learn():
    from sklearn import metrics as metrics_module

    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))  # class 4 never predicted
    cm = confusion_matrix(y_true, y_pred, 6)  # class 5 absent everywhere
    metrics = classification_metrics(cm, [str(k) for k in range(6)])
    assert metrics["overall_accuracy"] == pytest.approx(metrics_module.accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(metrics_module.f1_score(y_true, y_pred, average="macro"))
    per_class = metrics_module.f1_score(y_true, y_pred, average=None, labels=range(5))
    assert [metrics["per_class"][str(k)]["f1"] for k in range(5)] == pytest.approx(per_class)
    assert np.array_equal(cm[:5, :5], metrics_module.confusion_matrix(y_true, y_pred, labels=range(5)))
    assert metrics["per_class"]["5"]["support"] == 0


def metadata(n_classes: int, encoder_hash: str = "a" * 64) -> ProbeMetadata:
    return ProbeMetadata(
        class_names=[f"class {k}" for k in range(n_classes)],
        colors=default_colors(n_classes),
        level="patch",
        encoder_hash=encoder_hash,
        encoder={"name": "omnisat-test"},
        config={"kind": "linear"},
        metrics={"macro_f1": 0.5},
    )


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_probe_file_round_trip(tmp_path, kind):
    x, y = linear_rule_data(300)
    probe = fit_probe(x, y, 4, ProbeConfig(kind=kind, optimizer="adam", epochs=3, hidden=8))
    path = save_probe(tmp_path / "probe.safetensors", probe, metadata(4))
    loaded, meta = load_probe(path)
    assert meta == metadata(4)
    np.testing.assert_array_equal(loaded.predict_proba(x), probe.predict_proba(x))
    assert not list(tmp_path.glob(".*partial*"))


def test_probe_applied_to_another_encoder_is_refused(tmp_path):
    x, y = linear_rule_data(100)
    probe = fit_probe(x, y, 4, ProbeConfig(epochs=5))
    path = save_probe(tmp_path / "p.safetensors", probe, metadata(4, "a" * 64))
    loaded, meta = load_probe(path)
    check_encoder(loaded, meta, "a" * 64, "patch", 16)  # the same encoder passes
    with pytest.raises(EngineError, match="fitted on embeddings of omnisat-test.*fit a new probe"):
        check_encoder(loaded, meta, "b" * 64, "patch", 16, str(path))
    with pytest.raises(EngineError, match="patch-level"):
        check_encoder(loaded, meta, "a" * 64, "dense", 16)
    with pytest.raises(EngineError, match="16-wide"):
        check_encoder(loaded, meta, "a" * 64, "patch", 32)


def test_foreign_and_damaged_probe_files(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(EngineError, match="not a probe"):
        load_probe(other)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(EngineError, match="damaged.safetensors"):
        load_probe(damaged)
    with pytest.raises(EngineError, match="does not exist"):
        load_probe(tmp_path / "missing.safetensors")


def test_bad_probe_settings():
    with pytest.raises(EngineError, match="kind"):
        ProbeConfig(kind="forest")
    with pytest.raises(EngineError, match="optimizer"):
        ProbeConfig(optimizer="sgd")
