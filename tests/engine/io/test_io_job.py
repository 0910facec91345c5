"""The job format shared by the CLI, the worker and the QGIS algorithms."""

import json

import pytest

from engine.errors import EngineError
from engine.io.job import load_job

BASE = {"model": "m.safetensors", "modalities": {"s2": {"files": "s2"}}, "outputs": {"classes": "out/c.tif"}}


def with_(**changes):
    job = json.loads(json.dumps(BASE))
    job.update(changes)
    return job


def test_paths_are_relative_to_the_job_file(tmp_path):
    (tmp_path / "m.safetensors").touch()
    (tmp_path / "job.json").write_text(json.dumps(with_(modalities={"s2": {"files": ["a.tif", "/abs/b.tif"]}})))
    job = load_job(str(tmp_path / "job.json"))
    assert job.model == str(tmp_path / "m.safetensors")
    assert job.modalities["s2"].files == [str(tmp_path / "a.tif"), "/abs/b.tif"]
    assert job.outputs.classes == str(tmp_path / "out/c.tif")
    assert (job.batch_size, job.device, job.precision, job.min_valid_fraction) == (4, "auto", "auto", 0.5)


def test_inline_object_and_json_text_give_the_same_job():
    assert load_job(with_(tile_size=600)) == load_job(json.dumps(with_(tile_size=600)))


@pytest.mark.parametrize(
    "job, message",
    [
        (with_(tile_sise=600), "unknown key\\(s\\) tile_sise"),
        ({"model": "m", "modalities": {"s2": {"files": "x"}}}, "lacks 'outputs'"),
        (with_(outputs={}), "names no file"),
        (with_(modalities={}), '"modalities" is empty'),
        (with_(modalities={"s2": {"file": "x"}}), 'Modality "s2" of the job has unknown key\\(s\\) file'),
        (with_(modalities={"s2": {"files": "x", "dates": "2020-01-01"}}), '"dates" must be a list'),
        (with_(modalities={"s2": {"files": "x", "bands": [1, "2"]}}), '"bands" must be a list of band numbers'),
        (with_(extent={"bounds": [3, 2, 1, 4]}), "xmin < xmax"),
        (with_(device="gpu"), "'device' must be one of auto, cpu, cuda"),
        (with_(batch_size=2.5), "'batch_size' must be a whole number"),
        (with_(tile_size=-10), "'tile_size' must be positive"),
        (with_(min_valid_fraction=2), "between 0 and 1"),
        (with_(version=2), "version 2; this engine reads version 1"),
        (with_(outputs={"embeddings": "e.tif", "embeddings_dtype": "int8"}), "'embeddings_dtype' must be one of"),
    ],
)
def test_mistakes_are_named(job, message):
    with pytest.raises(EngineError, match=message):
        load_job(job)


def test_missing_or_broken_job_file(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        load_job(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EngineError, match="is not valid JSON"):
        load_job(str(tmp_path / "bad.json"))
