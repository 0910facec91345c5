"""omnisat:learnarea through the provider: a few steps with progress (step, loss, samples/s), the new model
in every picker, before/after on the labels; Cancel keeps the last checkpoint and the next run resumes."""

from __future__ import annotations

import pytest
from qgis.core import QgsProcessingContext, QgsProcessingFeedback

from omnisat_qgis.learn_area import LearnAreaRequest, RequestError
from tests.engine.ops.test_fit_features import scene  # noqa: F401 - fixture
from tests.plugin.test_model_picker import model_options, models_folder  # noqa: F401 - fixture
from tests.plugin.test_processing import provider, run_algorithm  # noqa: F401 - fixture

pytest.importorskip("sklearn")


class Recording(QgsProcessingFeedback):
    """Keeps the progress texts; cancels at the first progress report once ``cancel_when()`` holds
    (the texts passed on are thinned, so a cancel cannot wait for a given one)."""

    def __init__(self, cancel_when=None):
        super().__init__()
        self.texts: list[str] = []
        self.cancel_when = cancel_when

    def setProgressText(self, text):  # noqa: N802 - QGIS API
        self.texts.append(text)
        super().setProgressText(text)

    def setProgress(self, progress):  # noqa: N802 - QGIS API
        if self.cancel_when is not None and not self.isCanceled() and self.cancel_when():
            self.cancel()
        super().setProgress(progress)


def parameters(scene, **extra):  # noqa: F811 - the fixture's value
    folder, job, labels, truth = scene
    return {
        "MODEL_FILE": job["model"],
        "MODALITY_1": "s2",
        "LAYERS_1": job["modalities"]["s2"]["files"],
        "TILE_SIZE": 60,
        "BATCH_SIZE": 2,
        "DEVICE": "cpu",
    } | extra


def test_learn_this_area_writes_a_model_every_picker_lists(provider, scene, models_folder, tmp_path):  # noqa: F811
    feedback = Recording()
    results = run_algorithm(
        "learnarea",
        parameters(scene, NAME="my-fields", STEPS=3, LABELS=scene[2], REPORT=str(tmp_path / "report.html")),
        feedback,
    )
    assert results["OUTPUT"] == str(models_folder / "my-fields.safetensors") and results["TOTAL_STEPS"] == 3
    assert any(t.startswith("step 3: loss ") and "samples/s" in t for t in feedback.texts)
    assert 0 <= results["MACRO_F1_BEFORE"] <= 1 and 0 <= results["MACRO_F1_AFTER"] <= 1
    assert "<polyline" in (tmp_path / "report.html").read_text()
    assert "my-fields" in model_options("classify") and "my-fields" in model_options("fitprobe")


def test_cancel_keeps_the_last_checkpoint_and_the_next_run_resumes(provider, scene, models_folder):  # noqa: F811
    from tests.plugin.test_model_picker import algorithm

    checkpoints = models_folder / "cut-run" / "checkpoints"
    feedback = Recording(cancel_when=lambda: len(list(checkpoints.glob("step_*"))) >= 2)
    _, ok = algorithm("learnarea").run(
        parameters(scene, NAME="cut", STEPS=500, CHECKPOINT_EVERY=1), QgsProcessingContext(), feedback
    )
    assert not ok and feedback.isCanceled() and not any(t.startswith("step 500") for t in feedback.texts)
    kept = sorted((models_folder / "cut-run" / "checkpoints").iterdir())
    assert kept and int(kept[-1].name.split("_")[1]) >= 2
    results = run_algorithm("learnarea", parameters(scene, NAME="cut", STEPS=1))
    assert results["TOTAL_STEPS"] == int(kept[-1].name.split("_")[1]) + 1


def test_the_request_the_dock_sends(provider, models_folder):  # noqa: F811
    request = LearnAreaRequest(model="/m.safetensors", layers={"s2": ["/a.tif"]}, name="area 1")
    with pytest.raises(RequestError, match="NAME: 'area 1' cannot name a model file"):
        request.engine_params()
    step = LearnAreaRequest(model="/m.safetensors", layers={"s2": ["/a.tif"]}, name="area1", minutes=2).step()
    assert step.operation == "learn-area" and step.params["output"] == str(models_folder / "area1.safetensors")
    assert step.params["job"]["model"] == "/m.safetensors"
    assert step.params["job"]["modalities"] == {"s2": {"files": ["/a.tif"]}}
    assert models_folder.is_dir()


def test_a_wrong_sensor_is_refused_before_the_worker_starts(provider, scene, models_folder):  # noqa: F811
    from tests.plugin.test_model_picker import algorithm

    alg = algorithm("learnarea")
    ok, message = alg.checkParameterValues(parameters(scene, MODALITY_1="sentinel-2"), QgsProcessingContext())
    assert not ok and "'sentinel-2' is not a sensor" in message and "s2" in message
