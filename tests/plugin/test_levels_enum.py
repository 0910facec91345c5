"""The embedding levels offered by the Processing algorithms (static strings) and passed to the engine."""

from __future__ import annotations

import json

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

from engine.mapping.levels import LEVEL_NAMES
from omnisat_qgis.provider import PROVIDER_ID
from tests.plugin.test_processing import provider  # noqa: F401 - fixture
from tests.plugin.test_qgis_process import qgis_env, qgis_process  # noqa: F401 - fixture


def algorithm(name: str):
    found = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:{name}")
    assert found is not None, name
    return found


@pytest.mark.parametrize(
    "name, extra", [("embed", ()), ("fitprobe", ("auto",)), ("applyprobe", ("auto",)), ("change", ("auto",))]
)
def test_every_level_is_offered(provider, name, extra):  # noqa: F811 - fixture
    alg = algorithm(name)  # owns its parameter definitions: keep it alive
    parameter = alg.parameterDefinition("EMBEDDINGS_LEVEL")
    assert parameter.usesStaticStrings()
    assert tuple(parameter.options()) == extra + LEVEL_NAMES  # the same names as the engine's job format
    assert parameter.defaultValue() == (extra[0] if extra else "patch")


def test_the_chosen_level_reaches_the_engine(provider, tmp_path):  # noqa: F811 - fixture
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "model": "m.safetensors",
                "modalities": {"s2": {"files": "s2"}},
                "outputs": {"embeddings_level": "tile", "embeddings": "kept.tif"},
            }
        )
    )
    apply = algorithm("applyprobe")
    params = apply.engine_params(
        {
            "PROBE": str(tmp_path / "p.safetensors"),
            "JOB": str(job),
            "EMBEDDINGS_LEVEL": "dense",
            "CLASSES": str(tmp_path / "c.tif"),
        },
        QgsProcessingContext(),
        QgsProcessingFeedback(),
    )
    assert params["embeddings_level"] == "dense"
    # The job file's own level stays in the job (what "auto" would use); the files chosen here are its outputs.
    assert params["embeddings"]["outputs"] == {"embeddings_level": "tile", "classes": str(tmp_path / "c.tif")}


@pytest.mark.qgis_process
@pytest.mark.slow
def test_dense_probe_through_qgis_process(qgis_env, tmp_path):
    """Embed at the dense level, fit and apply a dense probe, all through qgis_process."""
    import numpy as np
    import rasterio

    from engine.models.anysat import ProjectorSpec
    from engine.models.checkpoint import save_checkpoint
    from tests.engine import anysat_helpers
    from tests.engine.probes.test_labels import point, write_layer
    from tests.engine.test_levels import NAMES, D, scene
    from tests.plugin.test_workflows import run

    env = qgis_env
    truth = np.random.default_rng(1).integers(0, 2, (24, 24))
    files = scene(tmp_path, truth)
    model = tmp_path / "anysat.safetensors"
    save_checkpoint(
        model, anysat_helpers.small_model(names=("s2",), embed_dim=D, projectors={"s2": ProjectorSpec(dropout=0.0)})
    )
    labels = write_layer(
        tmp_path / "labels.gpkg",
        [(point(c + 0.5, r + 0.5), NAMES[truth[r, c]]) for r in range(12) for c in range(24)],
        field_type="text",
    )
    dense = tmp_path / "dense.tif"
    run(
        env,
        "embed",
        MODEL=model,
        MODALITY_1="s2",
        LAYERS_1=files,
        PATCH_SIZE=20,
        DEVICE="cpu",
        EMBEDDINGS_LEVEL="dense",
        EMBEDDINGS=dense,
    )
    fit = run(
        env,
        "fitprobe",
        LABELS=labels,
        CLASS_FIELD="class",
        EMBEDDINGS_RASTER=dense,
        MODEL=model,
        EMBEDDINGS_LEVEL="dense",
        OUTPUT=tmp_path / "probe.safetensors",
    )
    assert fit["OVERALL_ACCURACY"] > 0.9
    applied = run(
        env,
        "applyprobe",
        PROBE=tmp_path / "probe.safetensors",
        EMBEDDINGS_RASTER=dense,
        MODEL=model,
        CLASSES=tmp_path / "classes.tif",
    )
    with rasterio.open(applied["CLASSES"]) as ds:
        assert ds.res == (10.0, 10.0) and (ds.read(1)[12:] == truth[12:]).mean() > 0.9
    # A patch-level request on the dense raster is refused with the engine's message.
    refused = qgis_process(
        env,
        "run",
        "omnisat:applyprobe",
        "--",
        f"PROBE={tmp_path / 'probe.safetensors'}",
        f"EMBEDDINGS_RASTER={dense}",
        f"MODEL={model}",
        "EMBEDDINGS_LEVEL=patch",
        f"CLASSES={tmp_path / 'wrong.tif'}",
    )
    assert refused.returncode != 0 and "holds dense-level embeddings, not patch" in refused.stdout + refused.stderr
