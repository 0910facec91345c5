"""learn-area: pretraining on the user's rasters for a few steps or a time budget, resume, the new model's
provenance and its place in the catalog, and the probe accuracy before and after on the same folds."""

from __future__ import annotations

import pytest

from engine.errors import EngineError
from engine.io.download import sha256_of
from engine.models.catalog import catalog
from engine.models.checkpoint import checkpoint_hash, read_metadata
from engine.runtime.registry import run_operation
from tests.engine.ops.test_fit_features import scene  # noqa: F401 - fixture


@pytest.fixture
def area_job(scene):  # noqa: F811 - the fixture
    folder, job, labels, truth = scene
    return dict(job, outputs={"embeddings": "never.tif"}, tile_size=60), labels, folder  # 25 windows


def test_a_few_steps_write_a_catalog_model_with_provenance_and_the_probe_before_after(area_job, tmp_path):
    job, labels, folder = area_job
    models = tmp_path / "models"
    models.mkdir()
    output = models / "my-area.safetensors"
    result = run_operation(
        "learn-area",
        {
            "job": job,
            "output": str(output),
            "steps": 3,
            "batch_size": 2,
            "threads": 1,
            "labels": labels,
            "report": str(tmp_path / "r.html"),
        },
    )
    assert result["steps"] == 3 and result["resumed_from"] == 0 and len(result["loss_curve"]) == 3
    assert [s for s, _ in result["loss_curve"]] == [1, 2, 3]
    provenance = read_metadata(output)["provenance"]
    assert provenance["parent"]["sha256"] == sha256_of(folder / "model.safetensors")
    assert provenance["inputs"]["s2"] == job["modalities"]["s2"]["files"] and provenance["steps"] == 3
    assert checkpoint_hash(output) != checkpoint_hash(folder / "model.safetensors")  # the weights moved
    assert [e.name for e in catalog(models)] == ["my-area"]  # the run folder's files are not models
    for key in ("before", "after"):
        assert 0.0 <= result[key]["macro_f1"] <= 1.0 and result[key]["validation_cells"] > 0
    assert result["before"]["validation_rule"] == result["after"]["validation_rule"]  # the same folds
    text = (tmp_path / "r.html").read_text()
    assert "<polyline" in text and "new model" in text and "parent model" in text

    again = run_operation("learn-area", {"job": job, "output": str(output), "steps": 2, "batch_size": 2, "threads": 1})
    assert again["resumed_from"] == 3 and again["steps"] == 5 and again["steps_this_run"] == 2
    assert [s for s, _ in again["loss_curve"]] == [1, 2, 3, 4, 5]  # one history across both runs
    fresh = run_operation(
        "learn-area",
        {
            "job": job,
            "output": str(output),
            "steps": 1,
            "batch_size": 2,
            "threads": 1,
            "resume": False,
            "run_dir": str(tmp_path / "fresh"),
        },
    )
    assert fresh["resumed_from"] == 0 and fresh["steps"] == 1


def test_the_time_budget_stops_the_run(area_job, tmp_path):
    job, labels, folder = area_job
    result = run_operation(
        "learn-area",
        {"job": job, "output": str(tmp_path / "timed.safetensors"), "minutes": 0.05, "batch_size": 2, "threads": 1},
    )
    assert result["steps"] >= 1 and (tmp_path / "timed.safetensors").is_file()
    checkpoints = sorted((tmp_path / "timed-run" / "checkpoints").iterdir())
    assert checkpoints and checkpoints[-1].name == f"step_{result['steps']:08d}"  # the last step is kept


def test_bad_requests(area_job, tmp_path):
    job, labels, folder = area_job
    with pytest.raises(EngineError, match="both are 0"):
        run_operation("learn-area", {"job": job, "output": str(tmp_path / "m.safetensors"), "minutes": 0})
    with pytest.raises(EngineError, match="must be a .safetensors file"):
        run_operation("learn-area", {"job": job, "output": str(tmp_path / "m.pt"), "steps": 1})
