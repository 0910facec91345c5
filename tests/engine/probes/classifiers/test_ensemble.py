"""auto's soft vote: which candidates it keeps, and the vote as a probe file (members on their own columns)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from engine.errors import EngineError
from engine.probes.classifiers import ProbeConfig, fit_probe
from engine.probes.classifiers.ensemble import soft_vote
from engine.probes.metrics import FoldScores
from engine.probes.probe_file import load_probe, save_probe
from engine.probes.selection import Candidate, Vote, best
from tests.engine.probes.test_probe import linear_rule_data, metadata


def scored(**folds):
    out = {}
    for name, values in folds.items():
        scores = FoldScores()
        scores.macro_f1 = list(values)
        out[Candidate(*name.split("__"))] = scores
    return out


def test_the_vote_keeps_the_best_within_one_fold_spread_and_at_most_its_size():
    scores = scored(
        linear__raw=[0.60, 0.70],
        knn__raw=[0.80, 0.90],
        random_forest__raw=[0.78, 0.84],
        mlp__embeddings=[0.30, 0.40],
        extra_trees__raw=[0.81, 0.85],
    )
    # The best (knn, 0.85 +- 0.05) keeps those with a mean >= 0.80, best first; the rest would dilute it.
    assert best(scores, 5) == Vote(
        (Candidate("knn", "raw"), Candidate("extra_trees", "raw"), Candidate("random_forest", "raw"))
    )
    assert best(scores, 2).members == (Candidate("knn", "raw"), Candidate("extra_trees", "raw"))
    assert best(scores, 1) == Candidate("knn", "raw")
    # A best far ahead of the rest stays alone.
    alone = scored(knn__raw=[0.95, 0.95], linear__raw=[0.5, 0.6])
    assert best(alone, 5) == Candidate("knn", "raw")


def test_a_vote_reads_the_union_of_its_members_feature_sets():
    vote = Vote((Candidate("knn", "raw"), Candidate("linear", "embeddings+indices")))
    assert vote.features == "embeddings+raw+indices" and vote.classifier == "ensemble"
    assert vote.name == "soft vote of knn on raw + linear on embeddings+indices"


def test_a_vote_of_different_kinds_on_different_columns_round_trips_through_its_file(tmp_path):
    x, y = linear_rule_data(300)  # 16 columns, 4 classes
    union = [f"c{i}" for i in range(x.shape[1])]
    a_cols, b_cols = union[:10], union[6:]
    forest = fit_probe(x[:, :10], y, 4, ProbeConfig(kind="random_forest", trees=10))
    linear = fit_probe(x[:, 6:], y, 4, ProbeConfig(kind="linear", epochs=20))
    vote = soft_vote([forest, linear], [a_cols, b_cols], union)
    expected = (forest.predict_proba(x[:, :10]) + linear.predict_proba(x[:, 6:])) / 2
    np.testing.assert_allclose(vote.predict_proba(x), expected, atol=1e-6)
    path = save_probe(tmp_path / "vote.safetensors", vote, metadata(4))
    loaded, _ = load_probe(path)
    assert loaded.kind == "ensemble" and loaded.in_dim == 16
    np.testing.assert_array_equal(loaded.predict_proba(x), vote.predict_proba(x))
    assert (loaded.predict(x) == y).mean() > 0.8


def test_a_vote_holding_an_unknown_member_kind_is_refused_by_name(tmp_path):
    x, y = linear_rule_data(100)
    member = fit_probe(x, y, 4, ProbeConfig(kind="knn"))
    path = save_probe(
        tmp_path / "vote.safetensors",
        soft_vote([member], [[f"c{i}" for i in range(16)]], [f"c{i}" for i in range(16)]),
        metadata(4),
    )
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        header = handle.metadata()
    architecture = json.loads(header["architecture"])
    architecture["members"][0]["kind"] = "xgboost"
    save_file(load_file(str(path)), str(path), metadata=dict(header, architecture=json.dumps(architecture)))
    with pytest.raises(EngineError, match="'xgboost' classifier.*update the engine or fit the probe again"):
        load_probe(path)
