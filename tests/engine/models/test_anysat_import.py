"""The reference-weights importer on synthetic state dicts with the reference's keys and shapes.

tests/engine/data/anysat_{tiny,base}_reference_keys.json list the reference encoder's
state-dict keys and shapes (counted from the public reference code with random weights).
"""

import json
from pathlib import Path

import pytest
import torch

from engine.errors import EngineError
from engine.models.anysat_import import map_state_dict, reference_model, unwrap
from engine.models.checkpoint import load_checkpoint, read_metadata
from engine.runtime.progress import Reporter
from engine.runtime.registry import get_operation

torch.set_num_threads(2)
DATA = Path(__file__).parents[1] / "data"


def reference_keys(size: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"anysat_{size}_reference_keys.json").read_text())


def synthetic_state(size: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in reference_keys(size).items()}


def test_every_base_key_is_consumed_and_every_weight_filled():
    with torch.device("meta"):
        state = {k: torch.empty(shape) for k, shape in reference_keys("base").items()}
        model = reference_model(state, "base.pth")
        mapped, report = map_state_dict(model, state, "base.pth")
    assert model.embed_dim == 768 and len(model.modalities) == 11
    assert report.unused == [] and report.missing == []
    assert len(report.mapped) == len(state) == 418
    assert set(mapped) == set(model.state_dict())


def test_tiny_round_trip_through_the_operation(tmp_path):
    state = synthetic_state("tiny")
    source = tmp_path / "anysat_tiny.pth"
    torch.save({"state_dict": state}, source)
    out = tmp_path / "anysat_tiny.safetensors"
    result = get_operation("import-anysat").run(
        get_operation("import-anysat").params(reference=str(source), output=str(out)), Reporter()
    )
    assert result["mapped"] == len(state) and result["unused"] == [] and result["missing"] == []
    loaded = load_checkpoint(out)
    ours = loaded.model.state_dict()
    # spot checks of the explicit map, one per kind of rule
    assert torch.equal(ours["combiner.cls_token"], state["cls_token"])
    assert torch.equal(
        ours["projectors.aerial_elevation.conv.weight"], state["projector_aerial-flair.patch_embed.weight"]
    )
    assert torch.equal(ours["projectors.s1_asc_ratio.ltae.query"], state["projector_s1.patch_embed.attention_heads.Q"])
    assert torch.equal(ours["projectors.l8.ltae.in_mlp.4.weight"], state["projector_l8.patch_embed.inconv.4.weight"])
    # S2's L-TAE has no dropout, so its layers sit at other indices than the reference's
    assert torch.equal(ours["projectors.s2.ltae.in_mlp.3.weight"], state["projector_s2.patch_embed.inconv.4.weight"])
    assert torch.equal(
        ours["spatial_encoder.blocks.1.attn.qkv.weight"], state["spatial_encoder.predictor_blocks.1.attn.qkv.weight"]
    )
    assert torch.equal(ours["cross_block.query"], state["blocks.2.attn.q_learned"])
    # iRPE tables: only buckets 3..7 of the reference are ever indexed
    assert torch.equal(
        ours["cross_block.block.attn.rel_pos.weight"], state["blocks.2.attn.rpe_k.lookup_table_weight"][0, :, 3:]
    )
    meta = read_metadata(out)
    assert meta["config"]["architecture"] == "anysat" and meta["provenance"]["size"] == "tiny"
    assert meta["provenance"]["keys_mapped"] == len(state)
    assert len(meta["config"]["modalities"]) == 11


def test_hub_wrapper_layout_with_its_duplicate_spatial_encoder():
    state = synthetic_state("tiny")
    wrapped = {f"model.{k}": v for k, v in state.items()}
    wrapped.update({k: v.clone() for k, v in state.items() if k.startswith("spatial_encoder.")})
    encoder, duplicates = unwrap(wrapped, "hub.pth")
    assert encoder.keys() == state.keys() and len(duplicates) == sum(k.startswith("spatial_encoder.") for k in state)
    wrapped["spatial_encoder.cls_token"] = wrapped["spatial_encoder.cls_token"] + 1
    with pytest.raises(EngineError, match="not a copy"):
        unwrap(wrapped, "hub.pth")


def test_unused_missing_and_mismatched_keys_are_reported(tmp_path):
    state = synthetic_state("tiny")
    state["projector_planet.patch_embed.weight"] = torch.zeros(3)
    del state["blocks.0.mlp.fc1.bias"]
    model = reference_model(state, "x.pth")
    _, report = map_state_dict(model, state, "x.pth")
    assert report.unused == ["projector_planet.patch_embed.weight"]
    assert report.missing == ["combiner.blocks.0.mlp.fc1.bias"]
    source = tmp_path / "x.pth"
    torch.save(state, source)
    op = get_operation("import-anysat")
    with pytest.raises(EngineError, match="1 weights of our model are not in"):
        op.run(op.params(reference=str(source), output=str(tmp_path / "x.safetensors")), Reporter())
    result = op.run(
        op.params(reference=str(source), output=str(tmp_path / "x.safetensors"), allow_missing=True), Reporter()
    )
    assert result["missing"] == ["combiner.blocks.0.mlp.fc1.bias"]
    state["blocks.0.mlp.fc1.bias"] = torch.zeros(7)
    with pytest.raises(EngineError, match="does not fit our 'combiner.blocks.0.mlp.fc1.bias'"):
        map_state_dict(model, state, "x.pth")


def test_unreadable_or_foreign_files_are_clear_errors(tmp_path):
    op = get_operation("import-anysat")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(EngineError, match="is not a PyTorch state dict"):
        op.run(op.params(reference=str(broken), output=str(tmp_path / "o.safetensors")), Reporter())
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(EngineError, match="no 'cls_token'"):
        op.run(op.params(reference=str(other), output=str(tmp_path / "o.safetensors")), Reporter())
    with pytest.raises(EngineError, match="safetensors"):
        op.run(op.params(reference=str(other), output=str(tmp_path / "o.pth")), Reporter())
