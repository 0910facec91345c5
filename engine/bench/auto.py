"""Time of ``fit-probe --classifier auto`` on a real scene, step by step (``python -m engine bench auto
[--datasets eolearn|crops]``).

eo-learn's land cover (the default) (Slovenia, 1 km², Sentinel-2 x 5 dates, 84 polygons, 5 classes): labels
rasterized on the 10 m grid, the candidates auto chooses among on input features (raw bands;
raw bands with temporal statistics and indices), fit-probe's probe settings (200 trees), 5
buffered spatial folds of whole polygons. Runs engine.fitting.fit_honestly as fit-probe does
(nested selection, learning curve, the final fit on every label) and prints the time of each
step, the number of classifier fits, the choice and its nested estimate. No encoder runs: the
figures are the cost of choosing, which does not depend on where the features come from.
Flanders crops (``--datasets crops``, engine.bench.crops.read_labelled: 2018 parcels, every labelled
pixel of Sentinel-2 + Sentinel-1 read through the engine's job path): one feature set, monthly+stats of
S2 and S1 together, folds of whole parcels (each parcel a unit of engine.probes.folds, as fit-probe
does with a parcel layer).
``--quick``: two cheap classifiers instead of auto's five.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import engine.probes.fit as fitting
from engine.bench.accuracy import eolearn_dataset, labelled_cells, raster_grid, raw_features
from engine.bench.crops import read_labelled
from engine.bench.flanders import build
from engine.errors import EngineError
from engine.probes import selection as validation
from engine.probes.classifiers import ProbeConfig
from engine.probes.features import FeatureSet, InputValues, available_indices, combine
from engine.runtime.progress import Reporter

SCENES = ("eolearn", "crops")


def eolearn_scene(folder: Path, reporter: Reporter):
    """(feature matrices, their column names, y, units, rows, cols, class names) of eo-learn."""
    dataset = eolearn_dataset(folder)
    grid = raster_grid(dataset.raw_files[0])
    data = labelled_cells(dataset, grid, reporter)
    samples = data.samples
    raw = raw_features(dataset.raw_files, grid.transform, samples.rows, samples.cols)
    keep = np.isfinite(raw).all(axis=1)
    dates = tuple(dataset.job["modalities"]["s2"]["dates"])
    values = [
        InputValues(dataset.raw_modality, dataset.raw_bands, dates, raw[keep].reshape(int(keep.sum()), len(dates), -1))
    ]
    derived = ["stats"] + (["indices"] if available_indices(dataset.raw_modality, dataset.raw_bands) else [])
    matrices, columns = {}, {}
    for name in ("raw", "+".join(["raw", *derived])):
        matrices[name], record = combine(None, values, FeatureSet.parse(name))
        columns[name] = record["columns"]
    return (
        matrices,
        columns,
        samples.y[keep],
        data.units[keep],
        samples.rows[keep],
        samples.cols[keep],
        list(samples.class_names),
    )


def crops_scene(folder: Path, reporter: Reporter):
    """The same for Flanders: S2 + S1 monthly+stats at every labelled pixel, each parcel a unit."""
    data, info = read_labelled(build(folder), reporter)
    reporter.log(f"Flanders crops: {info['pixels']} pixels, {info['parcels']} parcels, classes {info['classes']}")
    name = "monthly+stats"
    matrix, record = combine(None, [data.values["s2"], data.values["s1_asc"]], FeatureSet.parse(name))
    # a vote names the union of its members' sets in the canonical order ("stats+monthly")
    columns = {name: record["columns"], FeatureSet.parse(name).name: record["columns"]}
    return {name: matrix}, columns, data.y, data.parcel, data.rows, data.cols, data.names


class _Timed(Reporter):
    """Forwards to the bench's reporter and keeps the time each logged step started."""

    def __init__(self, inner: Reporter):
        self.inner, self.marks = inner, [("start", time.perf_counter())]

    def log(self, message: str, level: str = "info") -> None:
        self.marks.append((message, time.perf_counter()))
        self.inner.log(message, level)

    def progress(self, percent: float, message: str = "") -> None:
        self.inner.progress(percent, message)


def run(params, reporter: Reporter) -> dict[str, Any]:

    which = params.datasets or "eolearn"
    if which not in SCENES:
        raise EngineError(f"bench auto --datasets: one of {', '.join(SCENES)}, got {which!r}.")
    fits = [0]
    original, grid = validation.Setup.fit_members, fitting.AUTO_CLASSIFIERS

    def counted(self, choice, picked):
        fits[0] += len(choice.members)
        return original(self, choice, picked)

    validation.Setup.fit_members = counted
    if params.quick:  # the plumbing only
        fitting.AUTO_CLASSIFIERS = ("linear", "knn")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            load = eolearn_scene if which == "eolearn" else crops_scene
            matrices, columns, y, units, rows, cols, names = load(Path(tmp), reporter)
        timed = _Timed(reporter)
        started = time.perf_counter()
        # fit-probe's defaults (200 trees, 200 epochs, 5 folds, the cap per class, learning curve on)
        settings = fitting.FitSettings(ProbeConfig(kind="linear", seed=0), fitting.AUTO, tuple(matrices))
        outcome = fitting.fit_honestly(
            matrices, y, units, rows, cols, names, settings, reporter=timed, columns=columns.__getitem__
        )
        total = time.perf_counter() - started
    finally:
        validation.Setup.fit_members, fitting.AUTO_CLASSIFIERS = original, grid
    marks = timed.marks + [("end", time.perf_counter())]
    steps = {a[0]: round(b[1] - a[1], 1) for a, b in zip(marks[:-1], marks[1:])}
    for step, seconds in steps.items():
        reporter.log(f"{seconds:7.1f} s  {step}")
    selection = outcome.selection
    nested = selection.nested.summary()["macro_f1"]["mean"] if selection else None
    # what must not move when the work is made cheaper: each candidate's outer scores, the picks
    outer = {c.name: [round(f, 6) for f in s.macro_f1] for c, s in selection.candidates.items()} if selection else {}
    for candidate, folds in outer.items():
        reporter.log(f"outer macro-F1 per fold, {candidate}: {folds}")
    if selection:
        reporter.log("picked per outer fold: " + "; ".join(c.name for c in selection.chosen_per_fold))
    reporter.log(
        f"auto on {which} ({len(y)} cells, {len(matrices)} feature sets): {total:.1f} s, {fits[0]} classifier "
        f"fits, chose {outcome.candidate.name}, nested macro-F1 {nested:.3f}; load {os.getloadavg()[0]:.2f}"
    )
    return {
        "scene": which,
        "seconds": round(total, 1),
        "fits": fits[0],
        "chosen": outcome.candidate.name,
        "nested_macro_f1": nested,
        "outer_macro_f1": outer,
        "picked_per_fold": [c.name for c in selection.chosen_per_fold] if selection else [],
        "curve": [(p["cells_per_class"], round(p["macro_f1"]["mean"], 6)) for p in outcome.curve or []],
        "steps_s": steps,
        "cells": int(len(y)),
        "load_average": os.getloadavg(),
    }
