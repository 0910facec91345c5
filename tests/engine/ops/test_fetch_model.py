"""fetch-model against a local HTTP server started by the test (127.0.0.1 only,
tests/engine/hub_server.py); the test registers a downloadable entry for the synthetic
checkpoint it serves, with the file's own sha256."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.models import downloads
from engine.models.checkpoint import read_metadata
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation
from tests.engine.hub_server import FILE, REPOSITORY, serving, synthetic_checkpoint
from tests.engine.rasters import write_geotiff
from tests.engine.test_inference import Recorder


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> bytes:
    return synthetic_checkpoint(tmp_path_factory.mktemp("published"))


@pytest.fixture
def hub(published):
    with serving(published) as server:
        yield server


@pytest.fixture
def entry(published, monkeypatch):
    test_entry = replace(
        downloads.DOWNLOADS["anysat-base"],
        name="anysat-test",
        repository=REPOSITORY,
        file=FILE,
        sha256=hashlib.sha256(published).hexdigest(),
        size="tiny",
        size_bytes=len(published),
    )
    monkeypatch.setitem(downloads.DOWNLOADS, "anysat-test", test_entry)
    return test_entry


def fetch(hub_base: str, folder: Path, reporter: Reporter | None = None, **extra):
    return run_operation(
        "fetch-model",
        {"name": "anysat-test", "folder": str(folder), "hub_url": hub_base, **extra},
        reporter or Reporter(),
    )


def test_download_convert_and_embed_a_tile(hub, entry, tmp_path, monkeypatch):
    reporter = Recorder()
    result = fetch(hub.base, tmp_path / "models", reporter)
    checkpoint = tmp_path / "models" / "anysat-test.safetensors"
    assert result["output"] == str(checkpoint) and result["downloaded"] and result["converted"]
    assert not (tmp_path / "models" / "downloads" / "AnySat.pth").exists(), "the download is removed after conversion"
    meta = read_metadata(checkpoint)
    provenance = meta["provenance"]
    assert provenance["reference_sha256"] == entry.sha256 and provenance["licence"] == "MIT"
    assert provenance["download_url"] == f"{hub.base}/{REPOSITORY}/resolve/main/{FILE}"
    assert provenance["normalization"]["s2"].startswith("published")
    assert provenance["normalization"]["naip"].startswith("none published")
    assert "naip" in result["normalization_placeholders"] and "s2" not in result["normalization_placeholders"]
    assert reporter.percents == sorted(reporter.percents) and reporter.percents[-1] == 100
    # The converted model embeds a tile: one Sentinel-2 date, 60 m.
    raster = write_geotiff(
        tmp_path / "s2_20200615.tif", (np.random.default_rng(0).random((10, 6, 6)) * 3000).astype("float32")
    )
    embedded = run_operation(
        "embed",
        {
            "job": {
                "model": str(checkpoint),
                "modalities": {"s2": {"files": [str(raster)]}},
                "outputs": {"embeddings": str(tmp_path / "emb.tif"), "embeddings_level": "tile"},
                "device": "cpu",
            }
        },
    )
    assert embedded["windows"] == 1 and (tmp_path / "emb.tif").is_file()
    # It is in the catalog (models --json) as the user's model, next to the shipped ones.
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
    rows = {row["name"]: row for row in run_operation("models", {"catalog_only": True})["catalog"]}
    row = rows["anysat-test"]
    assert row["status"] == "installed" and row["source"] == "user" and row["path"] == str(checkpoint)
    assert (
        row["licence"] == "MIT"
        and not row["has_head"]
        and row["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    )
    assert row["modalities"]["s2"][0] == "B2" and len(row["modalities"]) == 11 and row["parameters"] > 1e6
    assert rows["anysat-tiny"]["source"] == "shipped" and rows["anysat-base"]["status"] == "downloadable"
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "elsewhere"))
    added = run_operation("models", {"catalog_only": True, "folders": [str(tmp_path / "models")]})["catalog"]
    assert [r["source"] for r in added if r["name"] == "anysat-test"] == ["added"]
    # A second run finds the converted checkpoint and does not download again.
    requests = len(hub.requests)
    again = fetch(hub.base, tmp_path / "models")
    assert not again["downloaded"] and len(hub.requests) == requests


def test_interrupted_download_resumes_with_a_range_request(hub, entry, tmp_path, published):
    hub.mode = "drop"
    with pytest.raises(EngineError, match="run the command again to resume") as info:
        fetch(hub.base, tmp_path / "models", keep_download=True)
    part = tmp_path / "models" / "downloads" / "AnySat.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(published) and str(part) in str(info.value)
    result = fetch(hub.base, tmp_path / "models", keep_download=True)
    assert hub.requests[-1]["range"] == f"bytes={kept}-"
    assert result["converted"] and not part.exists()
    assert (tmp_path / "models" / "downloads" / "AnySat.pth").read_bytes() == published


def test_server_that_ignores_range_restarts_cleanly(hub, entry, tmp_path, published):
    part = tmp_path / "models" / "downloads" / "AnySat.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(published[:1000])
    hub.mode = "no-range"
    reporter = Recorder()
    assert fetch(hub.base, tmp_path / "models", reporter)["converted"]
    assert any("does not resume" in message for _, message in reporter.logs)


def test_checksum_mismatch_deletes_the_file(hub, entry, tmp_path, monkeypatch):
    monkeypatch.setitem(downloads.DOWNLOADS, "anysat-test", replace(entry, sha256="0" * 64))
    with pytest.raises(EngineError, match="corrupted or not the published file") as info:
        fetch(hub.base, tmp_path / "models")
    assert entry.sha256 in str(info.value) and "0" * 64 in str(info.value)
    assert list((tmp_path / "models" / "downloads").iterdir()) == []
    assert not (tmp_path / "models" / "anysat-test.safetensors").exists()


@pytest.mark.parametrize("mode, message", [("404", "was not found \\(HTTP 404\\)"), ("500", "answered HTTP 500")])
def test_http_errors(hub, entry, tmp_path, mode, message):
    hub.mode = mode
    with pytest.raises(EngineError, match=message):
        fetch(hub.base, tmp_path / "models")
    assert not (tmp_path / "models" / "anysat-test.safetensors").exists()


def test_connection_refused(entry, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EngineError, match="Could not connect to 127.0.0.1"):
        fetch(f"http://127.0.0.1:{port}", tmp_path / "models")


def test_stalled_server_times_out_and_keeps_the_part(hub, entry, tmp_path):
    hub.mode = "stall"
    with pytest.raises(EngineError, match="sent nothing for 1 s"):
        fetch(hub.base, tmp_path / "models", timeout=1.0)
    assert (tmp_path / "models" / "downloads" / "AnySat.pth.part").stat().st_size > 0
    hub.release.set()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_full_disk(hub, entry, tmp_path):
    part = tmp_path / "models" / "downloads" / "AnySat.pth.part"
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    with pytest.raises(EngineError, match="The disk is full while downloading"):
        fetch(hub.base, tmp_path / "models")
    assert not (tmp_path / "models" / "anysat-test.safetensors").exists()


def test_no_hub_address_and_unknown_model(entry, tmp_path, monkeypatch):
    monkeypatch.delenv(downloads.HUB_ENV, raising=False)
    with pytest.raises(EngineError, match="No model hub address is set"):
        run_operation("fetch-model", {"name": "anysat-test", "folder": str(tmp_path)})
    with pytest.raises(EngineError, match="No downloadable model is named 'anysat-huge'"):
        run_operation("fetch-model", {"name": "anysat-huge", "folder": str(tmp_path)})


def test_the_official_entry():
    official = downloads.DOWNLOADS["anysat-base"]
    assert official.repository == "g-astruc/AnySat" and official.file == "models/AnySat.pth"
    assert official.sha256 == "ce1246527a28bade624048c448a1fa473ca85791b998f562ce2bcc3dcac93d4f"
    assert official.url("http://127.0.0.1:1/") == "http://127.0.0.1:1/g-astruc/AnySat/resolve/main/models/AnySat.pth"


def test_plan_only_then_a_file_fetched_by_another_tool_is_converted(hub, entry, tmp_path, published):
    plan = fetch(hub.base, tmp_path / "models", plan_only=True)
    assert plan["sha256"] == entry.sha256 and plan["url"].startswith(hub.base) and not plan["ready"]
    assert hub.requests == [] and not (tmp_path / "models").exists()
    # e.g. QGIS's network stack put the verified file where the plan says
    Path(plan["download"]).parent.mkdir(parents=True)
    Path(plan["download"]).write_bytes(published)
    result = fetch(hub.base, tmp_path / "models")
    assert result["converted"] and not result["downloaded"] and hub.requests == []
    assert fetch(hub.base, tmp_path / "models", plan_only=True)["ready"]


def test_the_official_entry_counts_the_parameters_of_the_converted_encoder():
    from engine.models.anysat import AnySat, anysat_config

    official = downloads.DOWNLOADS["anysat-base"]
    with torch.device("meta"):
        model = AnySat(anysat_config(official.size))
    assert official.parameters == sum(p.numel() for p in model.parameters())


def test_headless_download_goes_through_the_proxy_of_the_environment(hub, entry, tmp_path, monkeypatch):
    # The hub plays the proxy: a request for a host that does not resolve reaches it only
    # through HTTP_PROXY, with the absolute address as its path.
    hub.path = f"http://model-hub.invalid/{REPOSITORY}/resolve/main/{FILE}"
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", hub.base)
    assert fetch("http://model-hub.invalid", tmp_path / "models")["converted"]
    assert hub.requests[0]["path"] == hub.path


def test_a_job_names_a_catalog_model(tmp_path, monkeypatch):
    from engine.io.job import parse_job
    from engine.models.catalog import SHIPPED

    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
    job = {"model": "anysat-tiny", "modalities": {"s2": {"files": "s2.tif"}}, "outputs": {"embeddings": "e.tif"}}
    assert parse_job(job, tmp_path).model == str(SHIPPED / "anysat-tiny.safetensors")
    with pytest.raises(EngineError, match="'anysat-base' is not downloaded yet: run 'python -m engine fetch-model"):
        parse_job(job | {"model": "anysat-base"}, tmp_path)
