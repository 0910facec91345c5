"""The embedding levels offered by the Processing algorithms (static strings) and passed to the engine."""

from __future__ import annotations

import json

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

from engine.io.job import EMBEDDING_LEVELS
from omnisat_qgis.provider import PROVIDER_ID
from tests.plugin.test_processing import provider  # noqa: F401 - fixture


def algorithm(name: str):
    found = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:{name}")
    assert found is not None, name
    return found


@pytest.mark.parametrize("name, extra", [("embed", ()), ("fitprobe", ("auto",)), ("applyprobe", ("auto",)),
                                         ("change", ("auto",))])
def test_every_level_is_offered(provider, name, extra):  # noqa: F811 - fixture
    alg = algorithm(name)  # owns its parameter definitions: keep it alive
    parameter = alg.parameterDefinition("EMBEDDINGS_LEVEL")
    assert parameter.usesStaticStrings()
    assert tuple(parameter.options()) == extra + EMBEDDING_LEVELS  # the same names as the engine's job format
    assert parameter.defaultValue() == (extra[0] if extra else "patch")


def test_the_chosen_level_reaches_the_engine(provider, tmp_path):  # noqa: F811 - fixture
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": "m.safetensors", "modalities": {"s2": {"files": "s2"}},
                               "outputs": {"embeddings_level": "tile", "embeddings": "kept.tif"}}))
    apply = algorithm("applyprobe")
    params = apply.engine_params({"PROBE": str(tmp_path / "p.safetensors"), "JOB": str(job),
                                  "EMBEDDINGS_LEVEL": "dense", "CLASSES": str(tmp_path / "c.tif")},
                                 QgsProcessingContext(), QgsProcessingFeedback())
    assert params["embeddings_level"] == "dense"
    # The job file's own level stays in the job (what "auto" would use); the files chosen here are its outputs.
    assert params["embeddings"]["outputs"] == {"embeddings_level": "tile", "classes": str(tmp_path / "c.tif")}
