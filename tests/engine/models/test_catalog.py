"""The model catalog: the shipped checkpoints, read from metadata alone."""

from __future__ import annotations

import pytest
import torch

from engine.errors import EngineError
from engine.models.catalog import SHIPPED, best_encoder, catalog, find_model, with_modalities
from engine.models.checkpoint import save_checkpoint
from engine.runtime.progress import Reporter
from tests.engine import omnisat_helpers


def test_the_shipped_checkpoints_are_listed_longest_trained_first():
    entries = catalog()
    assert {e.name for e in entries} >= {"anysat-tiny", "omnisat-small"}
    assert [e.steps for e in entries] == sorted((e.steps for e in entries), reverse=True)
    anysat = find_model("anysat-tiny")
    assert anysat.path == SHIPPED / "anysat-tiny.safetensors" and anysat.architecture == "anysat"
    assert {"aerial", "s2", "s1_asc"} <= set(anysat.modalities) and anysat.provenance


def test_a_folder_with_two_checkpoints_and_a_stray_file(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "short.safetensors", omnisat_helpers.tiny_model(), provenance={"steps": 3})
    save_checkpoint(tmp_path / "long.safetensors", omnisat_helpers.tiny_model(), provenance={"steps": 30})
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    assert [e.name for e in catalog(tmp_path)] == ["long", "short"]
    assert find_model(str(tmp_path / "short.safetensors")).steps == 3
    assert with_modalities({"s2"}, tmp_path)[0].name == "long" and with_modalities({"modis"}, tmp_path) == []
    with pytest.raises(EngineError, match="No model 'other'.*long, short"):
        find_model("other", tmp_path)
    with pytest.raises(EngineError, match="not an engine checkpoint"):
        find_model(str(tmp_path / "broken.safetensors"))


def test_best_encoder_falls_back_to_random_weights_loudly(tmp_path):
    logs = []

    class Collect(Reporter):
        def log(self, message, level="info"):
            logs.append((level, message))

    reporter = Collect()
    path, text = best_encoder(tmp_path, reporter, {"no-such-sensor"})
    assert path.parent == tmp_path and "RANDOM" in text and any(level == "warning" for level, _ in logs)
    path, text = best_encoder(tmp_path, reporter, {"s2"})
    assert path.parent == SHIPPED and text.startswith("checkpoint ")
