"""fit-probe / apply-probe with other classifiers and input feature sets, through jobs on a small S2 scene."""

from __future__ import annotations

import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.models.checkpoint import save_checkpoint
from engine.models.modalities import sensor
from engine.probes.probe_file import load_probe
from engine.runtime.registry import run_operation
from tests.engine import omnisat_helpers
from tests.engine.probes.test_labels import box, point, write_layer
from tests.engine.test_local_features import SIZE, s2_scene

torch.set_num_threads(1)
NAMES = ("crop", "forest")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    files, truth = s2_scene(folder)
    torch.manual_seed(0)
    save_checkpoint(folder / "model.safetensors", omnisat_helpers.tiny_model(modalities=(sensor("s2"),)).eval())
    labels = write_layer(
        folder / "labels.gpkg",
        [(box(c, 2, c + 4, 22), NAMES[(c // 4) % 2]) for c in range(0, SIZE, 4)],
        field_type="text",
    )
    job = {
        "model": str(folder / "model.safetensors"),
        "modalities": {"s2": {"files": files}},
        "outputs": {"embeddings_level": "local"},
        "tile_size": 80,
        "threads": 1,
        "precision": "fp32",
        "batch_size": 16,
    }
    return folder, job, labels, truth


def keeping(job, tmp_path):
    """The job with its embeddings kept in ``tmp_path`` (a job must name an output)."""
    return dict(job, outputs={"embeddings": str(tmp_path / "embeddings.tif"), "embeddings_level": "local"})


def fit_auto(job, labels, probe: str, tmp_path, features: list[str], **settings) -> dict:
    """fit-probe --classifier auto on ``features``, small and quick (3 folds, no curve), with its class map."""
    return run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": keeping(job, tmp_path),
            "output": probe,
            "classifier": "auto",
            "classes": str(tmp_path / "fit_classes.tif"),
            "features": features,
            "trees": 10,
            "learning_curve": False,
            "folds": 3,
            **settings,
        },
    )


def assert_applied_equals_fitted(job, probe: str, tmp_path) -> None:
    """apply-probe through the job gives the class map fit-probe wrote."""
    run_operation(
        "apply-probe",
        {
            "probe": probe,
            "embeddings": dict(job, outputs={"classes": str(tmp_path / "classes.tif"), "embeddings_level": "local"}),
        },
    )
    with rasterio.open(tmp_path / "fit_classes.tif") as fitted, rasterio.open(tmp_path / "classes.tif") as applied:
        assert (fitted.read(1) == applied.read(1)).all()


def test_random_forest_on_raw_bands_fits_reports_and_applies_through_a_job(scene, tmp_path, monkeypatch):
    import engine.mapping.run

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran though no feature set reads embeddings")

    monkeypatch.setattr(engine.mapping.run, "run_map", no_encoder)
    folder, job, labels, truth = scene
    probe, report = str(tmp_path / "probe.safetensors"), tmp_path / "report.html"
    fit = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": keeping(job, tmp_path),
            "output": probe,
            "classifier": "random_forest",
            "features": ["raw"],
            "trees": 20,
            "report": str(report),
            "classes": str(tmp_path / "fit_classes.tif"),
        },
    )
    assert fit["classifier"] == "random_forest" and fit["features"] == "raw"
    assert fit["macro_f1"] > 0.9 and len(fit["fold_scores"]["macro_f1"]["folds"]) >= 2
    assert fit["learning_curve"][-1]["all"]
    assert not (tmp_path / "embeddings.tif").exists()  # not computed, so not written
    _, meta = load_probe(probe)
    assert meta.features["set"] == "raw" and meta.features["columns"][0] == "s2:B2@2020-06-01"
    assert len(meta.features["columns"]) == 3 * 10
    text = report.read_text()
    assert "Learning curve" in text and "per fold, mean" in text and "whole polygons" in text
    assert "Mapped area" in text and "area-report" in text
    with rasterio.open(tmp_path / "fit_classes.tif") as ds:
        fitted = ds.read(1)
    assert (fitted == truth).mean() > 0.95
    run_operation(
        "apply-probe",
        {
            "probe": probe,
            "embeddings": dict(
                job,
                outputs={
                    "classes": str(tmp_path / "classes.tif"),
                    "probabilities": str(tmp_path / "probabilities.tif"),
                    "embeddings_level": "local",
                },
            ),
        },
    )
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert (ds.read(1) == fitted).all()
    with rasterio.open(tmp_path / "probabilities.tif") as ds:  # per-class probabilities too (classify-parcels)
        assert ds.count == len(meta.class_names) and list(ds.descriptions) == list(meta.class_names)
        assert (ds.read().argmax(0) == fitted).all()
    with pytest.raises(EngineError, match="fitted on the feature set 'raw'.*give a job"):
        run_operation(
            "apply-probe",
            {"probe": probe, "embeddings": str(tmp_path / "fit_classes.tif"), "classes": str(tmp_path / "other.tif")},
        )


def test_auto_reports_every_candidate_a_nested_estimate_and_saves_its_vote(scene, tmp_path):
    folder, job, labels, _ = scene
    probe = str(tmp_path / "p.safetensors")
    fit = fit_auto(
        job, labels, probe, tmp_path, ["embeddings", "raw+indices"], epochs=30, report=str(tmp_path / "r.html")
    )
    assert len(fit["candidates"]) == 5 * 2
    chosen = [c for c in fit["candidates"] if c["chosen"]]
    assert fit["nested_estimate"]["macro_f1"]["mean"] == pytest.approx(fit["fold_scores"]["macro_f1"]["mean"])
    assert "Nested estimate" in (tmp_path / "r.html").read_text()
    classifier, meta = load_probe(probe)
    # Two clean classes: every candidate is near perfect, so several share the vote.
    assert fit["classifier"] == "ensemble" and 2 <= len(chosen) <= 5
    assert meta.validation["chosen"] == "soft vote of " + " + ".join(c["candidate"] for c in chosen)
    assert [m["kind"] for m in classifier.architecture()["members"]] == [c["classifier"] for c in chosen]
    # The vote reads the union of its members' feature sets, each member its own columns of it.
    union = {p for c in chosen for p in c["features"].split("+")}
    assert set(meta.features["set"].split("+")) == union == set(fit["features"].split("+"))
    assert len(meta.features["columns"]) == classifier.in_dim
    assert_applied_equals_fitted(job, probe, tmp_path)


def test_input_features_need_a_job_and_dates(scene, tmp_path):
    folder, job, labels, _ = scene
    embeddings = str(tmp_path / "emb.tif")
    run_operation("embed", {"job": dict(job, outputs={"embeddings": embeddings, "embeddings_level": "local"})})
    with pytest.raises(EngineError, match="read from the job's input rasters: give a job"):
        run_operation(
            "fit-probe",
            {
                "labels": labels,
                "embeddings": embeddings,
                "output": str(tmp_path / "p.safetensors"),
                "features": ["raw"],
            },
        )
    one_date = dict(keeping(job, tmp_path), modalities={"s2": {"files": job["modalities"]["s2"]["files"][:1]}})
    with pytest.raises(EngineError, match="at least 2 dates"):
        run_operation(
            "fit-probe",
            {
                "labels": labels,
                "embeddings": one_date,
                "output": str(tmp_path / "p.safetensors"),
                "features": ["stats"],
            },
        )
    assert not (tmp_path / "p.safetensors").exists()


def test_labels_in_one_block_are_fitted_without_a_score(scene, tmp_path):
    folder, job, _, _ = scene
    labels = write_layer(
        tmp_path / "two.gpkg",
        [
            (point(1.5, 1.5), "crop"),
            (point(5.5, 1.5), "forest"),
            (point(1.5, 2.5), "crop"),
            (point(5.5, 2.5), "forest"),
        ],
        field_type="text",
    )
    report = tmp_path / "r.html"
    fit = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": keeping(job, tmp_path),
            "output": str(tmp_path / "p.safetensors"),
            "report": str(report),
            "block_size": 1000.0,
        },
    )
    assert fit["macro_f1"] is None and fit["overall_accuracy"] is None
    assert fit["unvalidated_classes"] == list(NAMES)
    assert "Not validated" in report.read_text() and "no spatially separate validation" in report.read_text()
    assert (tmp_path / "p.safetensors").exists()


def test_a_class_in_one_polygon_trains_is_named_and_the_rest_is_scored(scene, tmp_path):
    folder, job, _, _ = scene
    # crop in three stripes, forest in one: forest cannot be both learned and tested.
    labels = write_layer(
        tmp_path / "one-forest.gpkg",
        [(box(c, 2, c + 4, 22), name) for c, name in ((0, "crop"), (4, "forest"), (8, "crop"), (16, "crop"))],
        field_type="text",
    )
    report = tmp_path / "r.html"
    fit = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": keeping(job, tmp_path),
            "classifier": "knn",
            "output": str(tmp_path / "p.safetensors"),
            "report": str(report),
        },
    )
    assert fit["unvalidated_classes"] == ["forest"]
    assert fit["macro_f1"] is not None and fit["validation_cells"] > 0
    assert "Not validated" in report.read_text() and "forest" in report.read_text()
    probe, meta = load_probe(tmp_path / "p.safetensors")
    assert meta.class_names == ["crop", "forest"]  # kept in training: the saved probe knows it


def test_sets_scoped_to_a_modality_fit_and_apply_and_an_absent_one_is_named(scene, tmp_path):
    folder, job, labels, _ = scene
    probe = str(tmp_path / "p.safetensors")
    fit = fit_auto(job, labels, probe, tmp_path, ["raw@s2", "indices@s2"])
    assert {c["features"] for c in fit["candidates"]} == {"raw@s2", "indices@s2"}
    _, meta = load_probe(probe)
    assert meta.features["set"].endswith("@s2") and all(c.startswith("s2:") for c in meta.features["columns"])
    assert_applied_equals_fitted(job, probe, tmp_path)
    with pytest.raises(EngineError, match="'raw@s1_asc' reads the modality 's1_asc'.*they have: s2"):
        run_operation(
            "fit-probe",
            {
                "labels": labels,
                "embeddings": keeping(job, tmp_path),
                "output": str(tmp_path / "q.safetensors"),
                "classifier": "random_forest",
                "features": ["raw@s1_asc"],
                "trees": 5,
                "learning_curve": False,
            },
        )
    assert not (tmp_path / "q.safetensors").exists()
