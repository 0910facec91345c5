"""The dock's "Learn this area": the request it sends holds the ticked rows, their dates and the area to
map, and a model in the models folder (downloaded, converted or learnt) joins the dock's model list."""

from __future__ import annotations

import shutil

import pytest

from omnisat_qgis import settings
from tests.plugin.test_dock import MODEL, dock, scene  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setattr(settings, "models_folder", lambda: folder)
    return folder


def test_learn_this_area_sends_the_ticked_rows_over_the_area(dock, models_folder, monkeypatch):  # noqa: F811
    started = []
    monkeypatch.setattr(dock.controller, "start", lambda title, steps, on_done: started.append(steps))
    dock.learn_minutes.setValue(3)
    dock.learn_name.setText("valley")
    dock.learn_area()
    assert len(started) == 1, dock.messages
    (step,) = started[0]
    assert step.operation == "learn-area" and step.params["minutes"] == 3.0
    assert step.params["output"] == str(models_folder / "valley.safetensors")
    job = step.params["job"]
    assert job["model"] == str(MODEL) and list(job["modalities"]) == ["s2"]
    s2 = job["modalities"]["s2"]
    assert [p.rsplit("/", 1)[-1] for p in s2["files"]] == ["S2_20150820.tif", "S2_20150830.tif", "S2_20150909.tif"]
    assert s2["dates"] == ["2015-08-20", "2015-08-30", "2015-09-09"] and "bands" not in s2
    canvas = dock.iface.mapCanvas().extent()
    assert job["extent"]["bounds"] == pytest.approx(
        [canvas.xMinimum(), canvas.yMinimum(), canvas.xMaximum(), canvas.yMaximum()]
    )


def test_a_bad_model_name_is_refused_in_the_message_bar(dock, models_folder, monkeypatch):  # noqa: F811
    monkeypatch.setattr(dock.controller, "start", lambda *args: pytest.fail("started"))
    dock.learn_name.setText("my area")
    dock.learn_area()
    assert "cannot name a model file" in dock.messages[-1]


def test_models_in_the_models_folder_join_the_list(dock, models_folder):  # noqa: F811
    models_folder.mkdir()
    shutil.copy(MODEL, models_folder / "learnt-valley.safetensors")
    dock.reload_models(str(models_folder / "learnt-valley.safetensors"))
    names = [dock.model_combo.itemText(i) for i in range(dock.model_combo.count())]
    assert "learnt-valley" in names and dock.model_combo.currentText() == "learnt-valley"
