"""universat-base from the dock's download (omnisat:fetchmodel) against a hub on 127.0.0.1 that the test
starts: the published layout (config.json + model.safetensors, a Tiny model written as the hub publishes
the Base), the sha256 recorded at the first download and shown, a later file that differs refused,
a cut download resumed, and the model then listed as installed by every picker."""

from __future__ import annotations

import json

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

from omnisat_qgis.model_catalog import model_info, picker_entries
from omnisat_qgis.provider import PROVIDER_ID, OmniSatProvider
from tests.engine.models.test_universat import published_layout
from tests.engine.range_server import serving

REPOSITORY = "g-astruc/UniverSat"  # the real catalog entry's repository, served locally


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, text):  # noqa: N802 - QGIS API
        self.lines.append(text)


@pytest.fixture
def hub(tmp_path):
    root = tmp_path / "served"
    published = root / REPOSITORY / "resolve" / "main"
    model, _ = published_layout(published)
    with serving(root, tree=True) as server:
        yield server, model, published


@pytest.fixture
def fetch(qgis_processing):
    provider = OmniSatProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:fetchmodel")
    yield algorithm
    QgsApplication.processingRegistry().removeProvider(provider)


def test_download_records_shows_and_then_enforces_the_sha256(hub, fetch, tmp_path):
    server, model, published = hub
    folder = tmp_path / "models"
    params = {
        "NAME": "universat-base",
        "FOLDER": str(folder),
        "HUB_URL": f"http://127.0.0.1:{server.server_address[1]}",
    }
    assert "universat-base" in fetch.parameterDefinition("NAME").options()
    # a cut download: half of the weights already on disk, the rest asked for with a Range request
    part = folder / "downloads" / "universat-base" / "model.safetensors.part"
    part.parent.mkdir(parents=True)
    weights = (published / "model.safetensors").read_bytes()
    part.write_bytes(weights[: len(weights) // 2])
    feedback = Feedback()
    result = fetch.processAlgorithm(params, QgsProcessingContext(), feedback)
    ranges = [r[2] for r in server.requests if r[1].endswith("model.safetensors")]
    assert ranges == [f"bytes={len(weights) // 2}-"], server.requests
    checkpoint = folder / "universat-base.safetensors"
    recorded = json.loads((folder / "pinned-sha256.json").read_text())["universat-base"]
    assert result["OUTPUT"] == str(checkpoint) and result["SHA256"] == recorded
    assert any(recorded in line and "recorded at first download" in line for line in feedback.lines), feedback.lines
    info = model_info(checkpoint)
    assert info.architecture == "universat" and info.reads_wavelengths
    assert recorded in info.summary() and "recorded at the first download" in info.summary()
    assert {"s2", "s1", "enmap"} <= {m.name for m in info.modalities}
    # the dock's picker: installed now (it lists the models folder)
    entries = {e.name: e for e in picker_entries(folder)}
    assert entries["universat-base"].installed and entries["universat-base"].path == checkpoint

    # the publisher's file changes: the plugin refuses it before the engine reads it, naming both hashes
    published_layout(published, seed=4)
    checkpoint.unlink()
    with pytest.raises(QgsProcessingException, match=f"expected {recorded} \\(recorded at the first download\\)"):
        fetch.processAlgorithm(params, QgsProcessingContext(), Feedback())
    assert not checkpoint.exists()
    assert not (folder / "downloads" / "universat-base" / "model.safetensors").exists()
    assert json.loads((folder / "pinned-sha256.json").read_text())["universat-base"] == recorded


def test_not_downloaded_is_offered_in_the_dock_picker(tmp_path):
    entries = {e.name: e for e in picker_entries(tmp_path)}
    assert not entries["universat-base"].installed and "not downloaded" in entries["universat-base"].note
    assert list(entries)[-2:] == ["anysat-base", "universat-base"]
