"""Fault suite: an output given the path of an input, or of another output, is refused before any work.

The pairings come from the operation registry, so a new operation is covered without a new test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

import numpy as np
import pytest

from engine.errors import EngineError
from engine.io.collisions import same_file
from engine.io.job import CLASS_OUTPUTS
from engine.runtime.registry import get_operation, operations, run_operation
from tests.engine.rasters import write_geotiff


def path_fields(op) -> tuple[list[str], list[str]]:
    """(outputs, other path fields: inputs and jobs) of an operation, from its registry entry."""
    hints = typing.get_type_hints(op.params)
    outputs, others = [], []
    for f in dataclasses.fields(op.params):
        if f.name in op.outputs:
            outputs.append(f.name)
        elif f.metadata.get("role") == "input" or dict in typing.get_args(hints[f.name]):
            others.append(f.name)
    return outputs, others


def required_values(op, folder: Path) -> dict[str, str]:
    """A distinct existing file for every required parameter (the check runs before anything reads them)."""
    values = {}
    for f in dataclasses.fields(op.params):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            path = folder / f"{op.name}-{f.name}.dat"
            path.write_bytes(b"original " + f.name.encode())
            values[f.name] = str(path)
    return values


PAIRINGS = [
    (name, output, other)
    for name, op in sorted(operations().items())
    for outputs, others in [path_fields(op)]
    for k, output in enumerate(outputs)
    for other in others + outputs[:k]
]


def test_the_registry_has_pairings_to_check():
    # normalized-index, normalization-stats, import-anysat, fit-probe, apply-probe, change at least
    assert len({name for name, _, _ in PAIRINGS}) >= 6, PAIRINGS


@pytest.mark.parametrize("name,output,other", PAIRINGS, ids=[f"{n}:{o}={i}" for n, o, i in PAIRINGS])
def test_every_output_equal_to_an_input_or_output_is_refused(name: str, output: str, other: str, tmp_path: Path):
    op = get_operation(name)
    values = required_values(op, tmp_path)
    victim = tmp_path / "victim.dat"
    victim.write_bytes(b"the user's data")
    values[other] = str(victim)
    values[output] = str(tmp_path / "sub" / ".." / "victim.dat")  # another spelling of the same file
    (tmp_path / "sub").mkdir()
    with pytest.raises(EngineError, match="choose another file name") as caught:
        run_operation(name, values)
    assert f"({output})" in str(caught.value) and f"({other})" in str(caught.value)
    assert victim.read_bytes() == b"the user's data"


def _job(folder: Path) -> dict:
    raster = write_geotiff(folder / "s2.tif", np.ones((10, 8, 8), np.uint16))
    mask = write_geotiff(folder / "mask.tif", np.zeros((1, 8, 8), np.uint8))
    (folder / "stats.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return {
        "model": str(folder / "model.safetensors"),
        "modalities": {"s2": {"files": [str(raster)], "dates": ["2020-01-01"], "mask": {"files": str(mask)}}},
        "normalization": str(folder / "stats.json"),
        "outputs": {},
    }


JOB_INPUTS = {
    "job file": lambda job, file: file,
    "model": lambda job, file: job["model"],
    "modality file": lambda job, file: job["modalities"]["s2"]["files"][0],
    "mask": lambda job, file: job["modalities"]["s2"]["mask"]["files"],
    "normalization": lambda job, file: job["normalization"],
}
JOB_OPERATIONS = [
    (name, f)
    for name, op in sorted(operations().items())
    for f in dataclasses.fields(op.params)
    if dict in typing.get_args(typing.get_type_hints(op.params)[f.name])
]
JOB_OUTPUTS = (*CLASS_OUTPUTS, "embeddings")


@pytest.mark.parametrize("name,job_field", [(n, f.name) for n, f in JOB_OPERATIONS])
@pytest.mark.parametrize("job_output", JOB_OUTPUTS)
@pytest.mark.parametrize("job_input", list(JOB_INPUTS))
def test_job_outputs_never_overwrite_what_the_job_reads(name, job_field, job_output, job_input, tmp_path: Path):
    op = get_operation(name)
    values = required_values(op, tmp_path)
    job, file = _job(tmp_path), tmp_path / "job.json"
    victim = Path(JOB_INPUTS[job_input](job, str(file)))
    job["outputs"] = {job_output: str(victim)}
    file.write_text(json.dumps(job))
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    values[job_field] = str(file)
    with pytest.raises(EngineError, match="is also the input"):
        run_operation(name, values)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("name,job_field", [(n, f.name) for n, f in JOB_OPERATIONS])
def test_operation_outputs_never_overwrite_what_a_job_reads(name, job_field, tmp_path: Path):
    op = get_operation(name)
    outputs, _ = path_fields(op)
    for output in outputs:
        for _job_input, where in JOB_INPUTS.items():
            values = required_values(op, tmp_path)
            job, file = _job(tmp_path), tmp_path / "job.json"
            job["outputs"] = {"embeddings": str(tmp_path / "embeddings.tif")}
            file.write_text(json.dumps(job))
            values[job_field] = str(file)
            values[output] = where(job, str(file))
            with pytest.raises(EngineError, match="is also the input"):
                run_operation(name, values)


def test_two_job_outputs_on_one_file_are_refused(tmp_path: Path):
    job = _job(tmp_path)
    job["outputs"] = {"classes": str(tmp_path / "map.tif"), "confidence": str(tmp_path / "map.tif")}
    with pytest.raises(EngineError, match="are the same file"):
        run_operation("classify", {"job": job})


def test_an_output_inside_a_folder_of_dates_is_refused(tmp_path: Path):
    job = _job(tmp_path)
    (tmp_path / "dates").mkdir()
    job["modalities"]["s2"]["files"] = str(tmp_path / "dates")
    job["outputs"] = {"classes": str(tmp_path / "dates" / "classes.tif")}
    with pytest.raises(EngineError, match="reads as a whole"):
        run_operation("classify", {"job": job})


def test_symlinks_and_hard_links_are_the_same_file(tmp_path: Path):
    target = tmp_path / "input.tif"
    target.write_bytes(b"x")
    (tmp_path / "link.tif").symlink_to(target)
    os.link(target, tmp_path / "hard.tif")
    assert same_file(tmp_path / "link.tif", target)
    assert same_file(tmp_path / "hard.tif", target)
    assert same_file(tmp_path / "new.tif", tmp_path / "." / "new.tif")  # neither exists yet
    assert not same_file(tmp_path / "new.tif", target)
    assert not same_file(tmp_path / "Input.tif", target)  # this file system tells case apart


def test_the_cli_refuses_normalized_index_over_its_input(tmp_path: Path, capsys):
    from engine.runtime.cli import main

    raster = write_geotiff(tmp_path / "in.tif", np.ones((4, 8, 8), np.uint16))
    original = raster.read_bytes()
    assert main(["normalized-index", str(raster), str(raster)]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert raster.read_bytes() == original


def test_run_map_called_directly_checks_too(tmp_path: Path):
    from engine.io.job import load_job
    from engine.mapping.run import run_map
    from engine.runtime.progress import Reporter
    from tests.engine.raster_fixtures import tiny_model

    job = _job(tmp_path)
    job["outputs"] = {"embeddings": job["modalities"]["s2"]["files"][0]}
    model, _ = tiny_model(modalities=("s2",))
    with pytest.raises(EngineError, match="is also the input"):
        run_map(load_job(job), Reporter(), model)
