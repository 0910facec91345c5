"""classify with an encoder and a fitted probe: one streaming pass equals embed-then-apply-probe,
for every classifier family; a probe given as the model finds its encoder in the catalog."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.runtime.registry import run_operation
from tests.engine.ops.test_fit_features import keeping, scene  # noqa: F401 - the module's scene fixture

KINDS = ("linear", "mlp", "knn", "random_forest", "gradient_boosting")


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def fit(job, labels, tmp_path, kind: str) -> str:
    probe = str(tmp_path / f"{kind}.safetensors")
    run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": keeping(job, tmp_path),
            "output": probe,
            "classifier": kind,
            "trees": 20,
            "hidden": 16,
            "epochs": 50,
            "folds": 2,
            "learning_curve": False,
        },
    )
    return probe


@pytest.mark.parametrize("kind", KINDS)
def test_one_pass_equals_embed_then_apply(scene, tmp_path, kind):  # noqa: F811 - the fixture
    folder, job, labels, truth = scene
    probe = fit(job, labels, tmp_path, kind)  # keeps tmp_path/embeddings.tif: the two-pass route's raster
    one_pass = tmp_path / "one"
    one_pass.mkdir()
    outputs = {"classes": str(one_pass / "classes.tif"), "confidence": str(one_pass / "confidence.tif")}
    result = run_operation("classify", {"job": dict(job, outputs=outputs), "probe": probe})
    assert sorted(p.name for p in one_pass.iterdir()) == ["classes.tif", "confidence.tif"]  # no embeddings raster
    assert result["head_level"] == "local" and result["class_names"] == ["crop", "forest"]
    run_operation(
        "apply-probe",
        {
            "probe": probe,
            "embeddings": str(tmp_path / "embeddings.tif"),
            "classes": str(tmp_path / "classes.tif"),
            "confidence": str(tmp_path / "confidence.tif"),
        },
    )
    classes, reference = read(one_pass / "classes.tif"), read(tmp_path / "classes.tif")
    assert classes.shape == reference.shape and (classes == reference).all()
    assert np.allclose(read(one_pass / "confidence.tif"), read(tmp_path / "confidence.tif"), atol=1e-5, equal_nan=True)
    assert (classes[0] == truth).mean() > 0.9  # and the map is right


def test_a_probe_given_as_the_model_finds_its_encoder_in_the_models_folder(scene, tmp_path, monkeypatch):  # noqa: F811
    folder, job, labels, truth = scene
    encoder = tmp_path / "fitted_with" / "my-encoder.safetensors"
    encoder.parent.mkdir()
    shutil.copy(folder / "model.safetensors", encoder)
    probe = fit(dict(job, model=str(encoder)), labels, tmp_path, "linear")
    models = tmp_path / "models"
    models.mkdir()
    shutil.move(encoder, models / encoder.name)  # no longer where the probe was fitted
    monkeypatch.setenv("OMNISAT_MODELS_DIR", str(models))
    result = run_operation("classify", {"job": dict(job, model=probe, outputs={"classes": str(tmp_path / "c.tif")})})
    assert result["probe"] == probe and (read(tmp_path / "c.tif")[0] == truth).mean() > 0.9

    (models / encoder.name).unlink()
    with pytest.raises(EngineError, match="fitted on embeddings of my-encoder.*models folder"):
        run_operation("classify", {"job": dict(job, model=probe, outputs={"classes": str(tmp_path / "d.tif")})})
    assert not (tmp_path / "d.tif").exists()


def test_an_encoder_without_a_head_names_the_three_ways_out(scene, tmp_path):  # noqa: F811
    folder, job, labels, truth = scene
    with pytest.raises(
        EngineError,
        match=r"without a classification head.*\(1\) fit a probe.*\(2\) use a fine-tuned "
        r"checkpoint.*\(3\) download",
    ):
        run_operation("classify", {"job": dict(job, outputs={"classes": str(tmp_path / "c.tif")})})


def test_a_probe_of_another_encoder_is_refused(scene, tmp_path):  # noqa: F811
    from engine.models.checkpoint import save_checkpoint
    from engine.models.modalities import sensor
    from tests.engine import omnisat_helpers

    folder, job, labels, truth = scene
    probe = fit(job, labels, tmp_path, "linear")
    save_checkpoint(tmp_path / "other.safetensors", omnisat_helpers.tiny_model(5, modalities=(sensor("s2"),)).eval())
    with pytest.raises(EngineError, match="not of the chosen model"):
        run_operation(
            "classify",
            {
                "job": dict(
                    job, model=str(tmp_path / "other.safetensors"), outputs={"classes": str(tmp_path / "c.tif")}
                ),
                "probe": probe,
            },
        )
