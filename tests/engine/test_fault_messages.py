"""Fault suite: files of the wrong kind and malformed worker requests get a message a person can act on."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.runtime.registry import run_operation
from tests.engine.rasters import write_geotiff

ROOT = Path(__file__).resolve().parents[2]


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def worker(job: dict | str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "worker"],
        input=job if isinstance(job, str) else json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_pth_given_as_a_model_says_how_to_convert_it(tmp_path: Path):
    from engine.models.checkpoint import load_checkpoint

    pth = tmp_path / "AnySat.pth"
    torch.save({"state_dict": {"cls_token": torch.zeros(1, 1, 8)}}, pth)
    with pytest.raises(
        EngineError,
        match="is a PyTorch pickle, not an engine checkpoint: convert it with `python -m engine import-anysat",
    ):
        load_checkpoint(pth)


@pytest.mark.parametrize(
    "save",
    [lambda obj, path: torch.save(obj, path), lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=4))],
    ids=["torch.save", "plain pickle"],
)
def test_import_anysat_refuses_a_pickle_that_would_run_code(save, tmp_path: Path, capfd):
    evil = tmp_path / "evil.pth"
    save({"state_dict": {"x": RunsACommand()}}, evil)
    with pytest.raises(EngineError) as caught:
        run_operation("import-anysat", {"reference": str(evil), "output": str(tmp_path / "o.safetensors")})
    message = str(caught.value)
    assert "holds Python objects other than tensors" in message and "refused and not loaded" in message
    assert "weights_only" not in message and "False" not in message
    assert "this must never run" not in capfd.readouterr().out
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_import_anysat_names_the_global_a_pickle_asks_for(protocol: int, tmp_path: Path):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": RunsACommand()}, protocol=protocol))
    with pytest.raises(EngineError, match=r"it asks for (posix|nt)\.system"):
        run_operation("import-anysat", {"reference": str(evil), "output": str(tmp_path / "o.safetensors")})
    torch.save({"x": RunsACommand()}, evil)
    with pytest.raises(EngineError, match=r"it asks for (posix|nt)\.system"):
        run_operation("import-anysat", {"reference": str(evil), "output": str(tmp_path / "o.safetensors")})


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "is empty \\(0 bytes\\), not a PyTorch state dict"),
        (b"model weights, see the website\n", "is not a PyTorch state dict"),
        (b"PK\x03\x04 truncated zip", "is not a PyTorch state dict"),
    ],
)
def test_import_anysat_on_files_that_are_not_state_dicts(content: bytes, expected: str, tmp_path: Path):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(EngineError, match=expected):
        run_operation("import-anysat", {"reference": str(path), "output": str(tmp_path / "o.safetensors")})


@pytest.fixture
def truncated(tmp_path: Path) -> Path:
    whole = write_geotiff(
        tmp_path / "whole.tif", np.random.default_rng(0).integers(1, 9, (2, 600, 600), dtype=np.uint16)
    )
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def test_a_truncated_geotiff_in_stats(truncated: Path):
    with pytest.raises(EngineError, match=f"'{truncated}' could not be read .*the file is damaged or incomplete"):
        run_operation("stats", {"input": str(truncated)})


def test_a_truncated_geotiff_through_the_worker(truncated: Path, tmp_path: Path):
    messages = worker(
        {
            "operation": "normalized-index",
            "params": {"input": str(truncated), "output": str(tmp_path / "o.tif"), "band_a": 1, "band_b": 2},
        }
    )
    assert messages[-1]["kind"] == "input"
    assert "the file is damaged or incomplete" in messages[-1]["message"]
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "request_,expected",
    [
        ({"protocol": "1", "operation": "stats"}, "\"protocol\" must be the number 1, got '1'"),
        ({"protocol": True, "operation": "stats"}, "\"protocol\" must be the number 1"),
        ({"operation": "stats", "threads": "many"}, "\"threads\" must be a positive whole number"),
        ({"operation": "stats", "threads": -3}, "\"threads\" must be a positive whole number"),
        ({"operation": "stats", "threads": 1.5}, "\"threads\" must be a positive whole number"),
        ({"operation": 7}, "\"operation\" must be the name of an operation"),
        ({"operation": "stats", "params": [1]}, "\"params\" must be a JSON object"),
        ({"operation": "stats", "thread": 2}, "unknown key(s) thread"),
        ({"params": {}}, "lacks \"operation\""),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_the_worker_checks_the_whole_request_first(request_, expected: str):
    messages = worker(request_)
    assert messages[-1] == {"type": "error", "kind": "input", "message": messages[-1]["message"]}
    assert expected in messages[-1]["message"]
