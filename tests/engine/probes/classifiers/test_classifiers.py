"""The classifier registry: every kind learns, saves without pickle, reloads to the same predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from engine.errors import EngineError
from engine.probes.classifiers import CLASSIFIERS, ProbeConfig, fit_probe
from engine.probes.head import ProbeHead
from engine.probes.probe_file import ProbeMetadata, load_probe, save_probe

FAST = {"epochs": 50, "trees": 20, "neighbours": 5}


def blobs(n: int = 400, d: int = 6, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def metadata(n_classes: int) -> ProbeMetadata:
    return ProbeMetadata(
        class_names=[f"c{i}" for i in range(n_classes)],
        colors=["#000000"] * n_classes,
        level="patch",
        encoder_hash="0" * 64,
    )


@pytest.mark.parametrize("kind", list(CLASSIFIERS))
def test_every_kind_learns_and_reloads_to_the_same_probabilities(kind, tmp_path):
    x, y = blobs()
    probe = fit_probe(x[:300], y[:300], 3, ProbeConfig(kind=kind, **FAST))
    accuracy = (probe.predict(x[300:]) == y[300:]).mean()
    assert accuracy > 0.9, (kind, accuracy)
    path = save_probe(tmp_path / "probe.safetensors", probe, metadata(3))
    loaded, meta = load_probe(path)
    assert loaded.kind == kind and meta.class_names == ["c0", "c1", "c2"]
    np.testing.assert_allclose(loaded.predict_proba(x[300:]), probe.predict_proba(x[300:]), atol=1e-6)
    proba = loaded.predict_proba(x[300:])
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    # Plain arrays and JSON only: every stored value is a numeric tensor.
    with safe_open(str(path), framework="numpy") as handle:
        assert json.loads(handle.metadata()["architecture"])["kind"] == kind
        assert all(handle.get_tensor(k).dtype.kind in "fiub" for k in handle.keys())


@pytest.mark.parametrize("kind", ["knn", "random_forest", "extra_trees", "gradient_boosting", "linear"])
def test_a_class_missing_from_training_gets_a_zero_column(kind):
    x, y = blobs(k=3)
    keep = y != 1
    probe = fit_probe(x[keep], y[keep], 3, ProbeConfig(kind=kind, **FAST))
    proba = probe.predict_proba(x)
    assert proba.shape == (len(x), 3)
    if kind != "linear":  # the linear probe keeps a (tiny) probability for an unseen class
        assert np.all(proba[:, 1] == 0)
    assert set(np.unique(probe.predict(x))) <= {0, 2}


def test_binary_gradient_boosting_matches_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = blobs(k=2)
    probe = fit_probe(x, y, 2, ProbeConfig(kind="gradient_boosting", trees=15, class_weighting=False))
    reference = HistGradientBoostingClassifier(max_iter=15, early_stopping=False, random_state=0).fit(x, y)
    np.testing.assert_allclose(probe.predict_proba(x), reference.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize(
    "kind, estimator", [("random_forest", "RandomForestClassifier"), ("extra_trees", "ExtraTreesClassifier")]
)
def test_forests_match_scikit_learn(kind, estimator):
    import sklearn.ensemble

    x, y = blobs(k=4)
    probe = fit_probe(x, y, 4, ProbeConfig(kind=kind, trees=12, class_weighting=False))
    reference = getattr(sklearn.ensemble, estimator)(n_estimators=12, random_state=0).fit(x, y)
    np.testing.assert_allclose(probe.predict_proba(x), reference.predict_proba(x), atol=1e-6)


@pytest.mark.parametrize("kind", ["random_forest", "extra_trees", "gradient_boosting"])
def test_a_tree_file_of_another_layout_is_refused_by_name(kind, tmp_path):
    x, y = blobs()
    path = save_probe(tmp_path / "probe.safetensors", fit_probe(x, y, 3, ProbeConfig(kind=kind, **FAST)), metadata(3))
    with safe_open(str(path), framework="numpy") as handle:
        header = dict(handle.metadata())
    arch = json.loads(header["architecture"])
    arch.update(tree_format=7, sklearn_version="0.99")
    other = tmp_path / "other.safetensors"
    save_file(load_file(str(path)), str(other), metadata=dict(header, architecture=json.dumps(arch)))
    with pytest.raises(EngineError, match=r"layout 7 \(scikit-learn 0.99\).*fit the probe again.*other.safetensors"):
        load_probe(other)


def test_float32_thresholds_keep_every_split_outcome():
    from engine.probes.classifiers.trees import float32_at_most

    rng = np.random.default_rng(0)
    thresholds = rng.normal(0, 100, 2000)
    thresholds[:500] = thresholds[:500].astype(np.float32)  # some exactly on a float32
    narrowed = float32_at_most(thresholds)
    assert narrowed.dtype == np.float32
    for direction in (-np.inf, np.inf):  # the float32 inputs closest to each threshold, both sides
        for x in (narrowed, np.nextafter(narrowed, np.float32(direction))):
            assert np.array_equal(x.astype(np.float64) <= thresholds, x <= narrowed)


@pytest.mark.parametrize("kind", ["random_forest", "extra_trees"])
def test_forest_file_is_compact_and_layouts_1_and_2_still_read(kind, tmp_path):
    from engine.probes.classifiers.trees import FOREST_FIELDS, forest_node_values, full_forest_nodes, narrowest_int

    x, y = blobs(k=4)
    probe = fit_probe(x, y, 4, ProbeConfig(kind=kind, trees=12, class_weighting=False))
    path = save_probe(tmp_path / "probe.safetensors", probe, metadata(4))
    stored = load_file(str(path))
    leaves = stored["right_child"] == -1
    pure = stored["leaf_class"] >= 0
    # node fields that can be derived are not stored: left children (the next node), a leaf's
    # feature and threshold, the missing-value direction
    assert "left_child" not in stored and "missing_go_to_left" not in stored
    assert len(stored["feature"]) == len(stored["threshold"]) == int((~leaves).sum())
    # pure leaves (most, in fully grown trees) by their class; shares for the others only
    assert pure.size == leaves.sum() and pure.mean() > 0.5 and stored["leaf_class"].dtype == np.int8
    assert stored["values"].dtype == np.float32 and len(stored["values"]) == int((~pure).sum())
    assert stored["threshold"].dtype == np.float32 and stored["right_child"].dtype.itemsize <= 4
    reloaded, _ = load_probe(path)
    np.testing.assert_array_equal(reloaded.predict(x), probe.predict(x))
    np.testing.assert_allclose(reloaded.predict_proba(x), probe.predict_proba(x), atol=1e-6)
    with safe_open(str(path), framework="numpy") as handle:
        header = dict(handle.metadata())
    arch = json.loads(header["architecture"])
    full = full_forest_nodes(stored)
    every_node = forest_node_values(arch, full, 4)
    # layout 2: every node's fields, class shares for every leaf
    layout2 = {k: v for k, v in stored.items() if k != "leaf_class"}
    layout2.update({k: narrowest_int(full[k]) for k in FOREST_FIELDS if k in full and k != "threshold"})
    layout2["threshold"] = full["threshold"].astype(np.float32)
    layout2["values"] = every_node[leaves].astype(np.float32)
    second = tmp_path / "layout2.safetensors"
    save_file(layout2, str(second), metadata=dict(header, architecture=json.dumps(dict(arch, tree_format=2))))
    assert second.stat().st_size > 1.5 * path.stat().st_size
    np.testing.assert_array_equal(load_probe(second)[0].predict_proba(x), reloaded.predict_proba(x))
    # layout 1: 64-bit fields, class shares for every node
    old = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int64)) for k, v in layout2.items()}
    old["values"] = every_node
    other = tmp_path / "layout1.safetensors"
    save_file(old, str(other), metadata=dict(header, architecture=json.dumps(dict(arch, tree_format=1))))
    assert other.stat().st_size > 2 * second.stat().st_size
    np.testing.assert_allclose(load_probe(other)[0].predict_proba(x), probe.predict_proba(x), atol=1e-6)


def test_installed_trees_without_a_needed_field_are_refused(monkeypatch, tmp_path):
    import engine.probes.classifiers.trees as trees

    x, y = blobs()
    path = save_probe(
        tmp_path / "p.safetensors", fit_probe(x, y, 3, ProbeConfig(kind="random_forest", **FAST)), metadata(3)
    )
    monkeypatch.setattr(trees, "FOREST_FIELDS", trees.FOREST_FIELDS + ("split_gate",))
    with pytest.raises(EngineError, match="without the field.*split_gate.*install scikit-learn"):
        load_probe(path)


def test_unknown_kind_in_a_file_is_refused(tmp_path):
    x, y = blobs()
    path = save_probe(tmp_path / "p.safetensors", fit_probe(x, y, 3, ProbeConfig(kind="knn")), metadata(3))
    with safe_open(str(path), framework="numpy") as handle:
        header = dict(handle.metadata())
    arch = dict(json.loads(header["architecture"]), kind="svm")
    save_file(load_file(str(path)), str(path), metadata=dict(header, architecture=json.dumps(arch)))
    with pytest.raises(EngineError, match="'svm' classifier"):
        load_probe(path)


@pytest.mark.parametrize("kind", ["knn", "random_forest"])
def test_probe_head_gives_the_classifier_probabilities(kind):
    x, y = blobs()
    probe = fit_probe(x, y, 3, ProbeConfig(kind=kind, **FAST))
    patch = torch.as_tensor(x[:24]).reshape(2, 3, 4, -1)
    head = ProbeHead(probe, "patch")
    proba = head.probabilities(head(patch))
    np.testing.assert_allclose(proba.reshape(-1, 3).numpy(), probe.predict_proba(x[:24]), atol=1e-5)
