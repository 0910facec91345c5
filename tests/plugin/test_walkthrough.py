"""Issue 14's "done when", headless: the packaged plugin in an isolated profile with nothing configured;
qgis_process runs Set up the engine (a real environment: torch CPU from the package registry), downloads
the official-layout AnySat checkpoint from a local hub on 127.0.0.1 and converts it, finds it in the
model picker, fits a probe on labels, classifies with the probe in one pass, and learns the area for a
few steps. Each step's wall time is printed (pytest -s); the set-up time is the fresh build's.

Only the download's origin differs from a user's: the hub is local and serves a synthetic checkpoint
in the reference layout (tests/engine/hub_server.py), so the worker runs through
walkthrough/hub_worker.py, which points the official entry at that file's sha256 and size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import rasterio

from omnisat_qgis.package import build_zip, install_zip
from tests.engine.hub_server import FILE, REPOSITORY, serving, synthetic_checkpoint
from tests.engine.probes.test_labels import box, write_layer
from tests.engine.test_local_features import SIZE, s2_scene

pytestmark = [pytest.mark.qgis_process, pytest.mark.slow]

QGIS_PROCESS = shutil.which("qgis_process")
HUB_WORKER = Path(__file__).parent / "walkthrough" / "hub_worker.py"


def timed(env, times: dict, step: str, *args, timeout=1800) -> dict:
    started = time.perf_counter()
    done = subprocess.run([QGIS_PROCESS, "--json", *args], env=env, capture_output=True, text=True, timeout=timeout)
    times[step] = time.perf_counter() - started
    assert done.returncode == 0, f"{step}: " + done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)["results"]


def test_from_the_zip_to_a_learnt_model_headless(tmp_path: Path):
    if QGIS_PROCESS is None:
        pytest.skip("qgis_process is not installed (run .ci/setup)")
    times: dict[str, float] = {}
    install_zip(build_zip(tmp_path / "omnisat_qgis.zip"), tmp_path / "plugins")
    profile = tmp_path / "profile"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMNISAT_PYTHON", "OMNISAT_MODELS_DIR")}
    env.update(
        QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile), QGIS_PLUGINPATH=str(tmp_path / "plugins")
    )
    assert (
        subprocess.run(
            [QGIS_PROCESS, "plugins", "enable", "omnisat_qgis"], env=env, capture_output=True, timeout=120
        ).returncode
        == 0
    )

    built = timed(
        env, times, "set up the engine (fresh environment)", "run", "omnisat:setupengine", "--", "FORCE_CPU=true"
    )
    assert built["REUSED"] == "False" and Path(built["PYTHON"]).is_relative_to(profile)
    timed(env, times, "set up the engine again (checks only)", "run", "omnisat:setupengine")

    published = synthetic_checkpoint(tmp_path)
    wrapper = tmp_path / "hub-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{built["PYTHON"]}" "{HUB_WORKER}" "$@"\n')
    wrapper.chmod(0o755)
    env.update(
        OMNISAT_PYTHON=str(wrapper),
        OMNISAT_TEST_HUB_ENTRY=json.dumps(
            {
                "repository": REPOSITORY,
                "file": FILE,
                "sha256": hashlib.sha256(published).hexdigest(),
                "size_bytes": len(published),
                "size": "tiny",
            }
        ),
    )

    files, truth = s2_scene(tmp_path)
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(box(c, 2, c + 4, 22), ("crop", "forest")[(c // 4) % 2]) for c in range(0, SIZE, 4)],
        field_type="text",
    )
    layers = [f"LAYERS_1={f}" for f in files]
    classify = [
        "run",
        "omnisat:classify",
        "--",
        "MODEL=anysat-base",
        "MODALITY_1=s2",
        *layers,
        "TILE_SIZE=60",
        "DEVICE=cpu",
    ]
    refused = subprocess.run(
        [QGIS_PROCESS, *classify, f"CLASSES={tmp_path / 'early.tif'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and "not downloaded yet" in refused.stdout + refused.stderr

    with serving(published) as hub:
        fetched = timed(
            env,
            times,
            "download and convert (local hub)",
            "run",
            "omnisat:fetchmodel",
            "--",
            "NAME=anysat-base",
            f"HUB_URL={hub.base}",
        )
    model = Path(fetched["OUTPUT"])
    assert model.is_relative_to(profile) and model.parent.name == "models" and model.is_file()

    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "model": "anysat-base",
                "modalities": {"s2": {"files": files}},
                "tile_size": 60,
                "outputs": {"embeddings": str(tmp_path / "embeddings.tif")},
            }
        )
    )
    fit = timed(
        env,
        times,
        "fit a probe on the labels",
        "run",
        "omnisat:fitprobe",
        "--",
        f"LABELS={labels}",
        "CLASS_FIELD=class",
        f"JOB={job}",
        f"OUTPUT={tmp_path / 'probe.safetensors'}",
        "FOLDS=2",
    )
    assert fit["CLASS_NAMES"] == "crop, forest"
    timed(
        env,
        times,
        "classify with the probe, one pass",
        *classify,
        f"PROBE={tmp_path / 'probe.safetensors'}",
        f"CLASSES={tmp_path / 'classes.tif'}",
    )
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.shape == truth.shape and set(ds.read(1).ravel()) <= {0, 1}

    learnt = timed(
        env,
        times,
        "learn this area (3 steps, labels before/after)",
        "run",
        "omnisat:learnarea",
        "--",
        "MODEL=anysat-base",
        "MODALITY_1=s2",
        *layers,
        "TILE_SIZE=60",
        "STEPS=3",
        "BATCH_SIZE=2",
        "NAME=my-area",
        f"LABELS={labels}",
        f"REPORT={tmp_path / 'learnt.html'}",
    )
    assert learnt["TOTAL_STEPS"] == 3 and Path(learnt["OUTPUT"]).parent == model.parent
    assert "<polyline" in (tmp_path / "learnt.html").read_text()
    listed = subprocess.run(
        [QGIS_PROCESS, "help", "omnisat:classify"], env=env, capture_output=True, text=True, timeout=600
    )
    assert "my-area" in listed.stdout and "anysat-base" in listed.stdout
    print("\nWalk-through wall times (s):\n" + "\n".join(f"  {k:<48} {v:8.1f}" for k, v in times.items()))
