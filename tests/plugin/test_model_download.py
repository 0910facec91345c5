"""Downloads through QGIS's network stack (omnisat_qgis.network_download) and the
omnisat:fetchmodel algorithm, against the local HTTP server of tests/engine/hub_server.py (127.0.0.1)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

from omnisat_qgis.network_download import DownloadCallbacks, DownloadCancelled, DownloadError, download
from omnisat_qgis.paths import engine_root
from omnisat_qgis.provider import PROVIDER_ID, OmniSatProvider
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerCancelled, WorkerRun, run_worker
from tests.engine.hub_server import FILE, REPOSITORY, Hub, serving, synthetic_checkpoint


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> bytes:
    return synthetic_checkpoint(tmp_path_factory.mktemp("published"))


@pytest.fixture
def hub(published, qgis_app):
    with serving(published) as server:
        yield server


def url(hub: Hub) -> str:
    return f"{hub.base}/{REPOSITORY}/resolve/main/{FILE}"


def test_download_resume_and_verify(hub, published, tmp_path):
    target, sha = tmp_path / "AnySat.pth", hashlib.sha256(published).hexdigest()
    hub.mode = "drop"
    with pytest.raises(DownloadError, match="download again to resume"):
        download(url(hub), target, sha)
    kept = (tmp_path / "AnySat.pth.part").stat().st_size
    assert 0 < kept < len(published) and not target.exists()
    seen = []
    assert download(url(hub), target, sha, DownloadCallbacks(progress=lambda done, total: seen.append((done, total))))
    assert hub.requests[-1]["range"] == f"bytes={kept}-"
    assert target.read_bytes() == published and seen[-1] == (len(published), len(published))
    assert not download(url(hub), target, sha), "a verified file is not fetched again"


def test_mismatch_http_errors_stall_and_cancel(hub, published, tmp_path):
    target = tmp_path / "AnySat.pth"
    with pytest.raises(DownloadError, match="corrupted or not the published file"):
        download(url(hub), target, "0" * 64)
    assert list(tmp_path.iterdir()) == []
    for mode, message in (("404", "HTTP 404"), ("500", "HTTP 500")):
        hub.mode = mode
        with pytest.raises(DownloadError, match=message):
            download(url(hub), target, "0" * 64)
    hub.mode = "stall"
    with pytest.raises(DownloadError, match="sent nothing for 1 s"):
        download(url(hub), target, "0" * 64, stall_timeout_s=1.0)
    hub.release.set()
    with pytest.raises(DownloadCancelled):
        download(url(hub), target, "0" * 64, DownloadCallbacks(is_cancelled=lambda: True))


def test_fetchmodel_algorithm_checks_the_published_sha256(hub, tmp_path, qgis_processing):
    # The real anysat-base entry: the local server answers 404 first, then serves a file that
    # is not the published one, which the plugin must refuse before the engine reads it.
    hub.path = "/g-astruc/AnySat/resolve/main/models/AnySat.pth"
    provider = OmniSatProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:fetchmodel")
        params = {"NAME": "anysat-base", "FOLDER": str(tmp_path / "models"), "HUB_URL": hub.base}
        hub.mode = "404"
        with pytest.raises(QgsProcessingException, match="was not found \\(HTTP 404\\)"):
            algorithm.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
        hub.mode = "ok"
        with pytest.raises(QgsProcessingException, match="corrupted or not the published file"):
            algorithm.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
        assert list((tmp_path / "models" / "downloads").iterdir()) == []
        assert not (tmp_path / "models" / "anysat-base.safetensors").exists()
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)


def test_cancelling_the_engine_download_keeps_the_part_for_resuming(hub, tmp_path):
    hub.path, hub.mode = "/g-astruc/AnySat/resolve/main/models/AnySat.pth", "stall"
    seen = []
    run = WorkerRun(
        python=Path(sys.executable),
        engine_root=engine_root(),
        operation="fetch-model",
        params={"name": "anysat-base", "folder": str(tmp_path / "models"), "hub_url": hub.base},
    )
    with pytest.raises(WorkerCancelled):
        run_worker(
            run,
            WorkerCallbacks(
                progress=lambda percent, message: seen.append(message),
                is_cancelled=lambda: any(m.startswith("downloading") for m in seen),
            ),
        )
    assert (tmp_path / "models" / "downloads" / "AnySat.pth.part").stat().st_size > 0
    assert not (tmp_path / "models" / "anysat-base.safetensors").exists()
