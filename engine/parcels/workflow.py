"""Classify parcels: from a map's per-pixel probabilities, or from per-parcel features of a job's inputs
with a classifier fitted on the parcels that carry a class (scored by whole-parcel cross-validation)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.errors import EngineError
from engine.parcels.classify import ParcelStatistics, aggregate_pixels, parcel_result
from engine.parcels.layer import OK, ParcelPixels, Parcels, parcel_pixels, read_parcels, write_parcel_map
from engine.runtime.progress import Reporter

BLOCK_ROWS = 256  # grid rows read at a time for per-parcel features


@dataclass(frozen=True)
class ParcelFeatureSettings:
    feature_set: str = "monthly+stats"
    classifier: str = "random_forest"
    folds: int = 5
    seed: int = 0


def _colors(classes_raster: str | None, n: int) -> list[str]:
    from engine.probes.probe_file import default_colors

    if classes_raster:
        from engine.io.raster import open_raster

        with open_raster(classes_raster, "class map") as ds:
            try:
                table = ds.colormap(1)
                return ["#{:02x}{:02x}{:02x}".format(*table[k][:3]) for k in range(n)]
            except ValueError:  # no colour table
                pass
    return default_colors(n)


def _check_overlap(parcels: Parcels, pixels: ParcelPixels, what: str) -> None:
    usable = [i for i, s in enumerate(parcels.status) if s == OK]
    if usable and not pixels.pixels[usable].any():
        raise EngineError(
            f"No parcel of '{parcels.path}' covers a pixel centre of {what}: the parcels lie outside "
            "the map's area (or are smaller than its pixels). Give parcels of the mapped area."
        )


def parcels_from_probabilities(
    parcels_path: str,
    probabilities: str,
    output: str,
    layer: str | None,
    output_layer: str,
    classes_raster: str | None,
    reporter: Reporter,
) -> dict[str, Any]:
    """Way 1: each parcel's mean class probability over its pixels that have one."""
    from engine.io.raster import open_raster

    with open_raster(probabilities, "probabilities") as ds:
        names = [d or f"class {k}" for k, d in enumerate(ds.descriptions)]
        if ds.count < 2:
            raise EngineError(
                f"'{probabilities}' has {ds.count} band: give the probabilities raster of classify "
                "(one band per class), not the class map or the confidence."
            )
        data = ds.read(out_dtype="float32", masked=False)
        if ds.nodata is not None and not np.isnan(ds.nodata):
            data[data == ds.nodata] = np.nan
        crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
    parcels = read_parcels(parcels_path, crs, layer)
    pixels = parcel_pixels(parcels, transform, shape)
    _check_overlap(parcels, pixels, f"'{probabilities}'")
    result = aggregate_pixels(data, pixels, parcels.status)
    written = write_parcel_map(
        parcels,
        result,
        names,
        _colors(classes_raster, len(names)),
        output,
        output_layer,
        {"description": f"mean class probability of {probabilities}'s pixels per parcel"},
    )
    return _summary(parcels, result, names, written, reporter, "pixels")


def _summary(parcels: Parcels, result, names, written, reporter: Reporter, method: str, **extra) -> dict[str, Any]:
    classified = int((result.class_index >= 0).sum())
    counts = {names[k]: int((result.class_index == k).sum()) for k in range(len(names))}
    reasons: dict[str, int] = {}
    for s in result.status:
        if s != OK and not s.startswith("ok;"):
            reasons[s] = reasons.get(s, 0) + 1
    reporter.log(
        f"{classified} of {len(parcels)} parcels classified ({method}); "
        + ", ".join(f"{n}: {c}" for n, c in counts.items())
        + ("; no class: " + "; ".join(f"{r} ({c})" for r, c in reasons.items()) if reasons else "")
    )
    reporter.log(f"Wrote {written['output']} (layer {written['layer']}, styled)")
    return {
        **written,
        "method": method,
        "parcels": len(parcels),
        "classified": classified,
        "per_class": counts,
        "no_class": reasons,
        **extra,
    }


def job_parcel_features(
    job, parcels_path: str, layer: str | None, feature_set: str, reporter: Reporter
) -> tuple[Parcels, ParcelPixels, np.ndarray, list[str], np.ndarray]:
    """Per parcel, the mean and spread of the pixel features of ``feature_set`` (engine.features) over its
    pixels on the job's output grid: (P, 2F), the column names and each parcel's valid pixel count."""
    from engine.mapping.plan import plan_geometry, resolve_inputs
    from engine.models.checkpoint import load_checkpoint
    from engine.probes.features import FeatureSet, input_features, read_inputs

    features = FeatureSet.parse(feature_set)
    if features.uses_embeddings:
        raise EngineError(
            "Per-parcel features are read from the job's inputs: choose among raw, stats, indices and "
            "monthly (not embeddings)."
        )
    model = load_checkpoint(job.model).model
    modalities = resolve_inputs(job, model, reporter)
    grid = plan_geometry(job, model, modalities).output_grid
    parcels = read_parcels(parcels_path, grid.crs, layer)
    pixels = parcel_pixels(parcels, grid.transform, (grid.height, grid.width))
    _check_overlap(parcels, pixels, "the job's grid")
    stats, names, radar_db = None, [], None
    steps = reporter.steps((grid.height + BLOCK_ROWS - 1) // BLOCK_ROWS, "Per-parcel features")
    for row in range(0, grid.height, BLOCK_ROWS):
        window = Window(0, row, grid.width, min(BLOCK_ROWS, grid.height - row))
        index = pixels.index[row : row + int(window.height)].ravel()
        if (index >= 0).any():
            inputs, ok = read_inputs(modalities, grid, window)
            if radar_db is None:  # decided once, on the first block, like fit-probe on its labels
                from engine.probes.features import detect_radar_db

                radar_db = detect_radar_db(inputs)
            x, names = input_features(inputs, features, radar_db)
            stats = stats or ParcelStatistics(len(parcels), x.shape[1])
            stats.add(x, index, ok)
        steps.advance()
    columns = [f"{n}:parcel_mean" for n in names] + [f"{n}:parcel_std" for n in names]
    values = stats.result() if stats else np.full((len(parcels), 0), np.nan, np.float32)
    valid_pixels = stats.pixels if stats else np.zeros(len(parcels), np.int64)
    return parcels, pixels, values, columns, valid_pixels


def parcel_folds(n: int, folds: int, seed: int, y: np.ndarray) -> np.ndarray:
    """Fold of each labelled parcel (whole parcels), classes spread over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(n, int)
    start = 0
    for k in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == k))
        fold[members] = (np.arange(members.size) + start) % folds
        start += members.size
    return fold


def parcels_from_features(
    job,
    parcels_path: str,
    class_field: str,
    output: str,
    layer: str | None,
    output_layer: str,
    settings: ParcelFeatureSettings,
    reporter: Reporter,
) -> dict[str, Any]:
    """Way 2: a classifier fitted on the per-parcel features of the parcels that carry a class in
    ``class_field``, applied to every parcel; its accuracy on held-out whole parcels in the result."""
    from engine.probes.classifiers import ProbeConfig
    from engine.probes.classifiers.registry import fit_probe
    from engine.probes.metrics import classification_metrics, confusion_matrix

    parcels, pixels, x, columns, valid_pixels = job_parcel_features(
        job, parcels_path, layer, settings.feature_set, reporter
    )
    if class_field not in {name for name, *_ in parcels.fields}:
        raise EngineError(
            f"The parcels layer '{parcels_path}' has no field {class_field!r}; its fields: "
            f"{', '.join(name for name, *_ in parcels.fields)}."
        )
    raw = [a.get(class_field) for a in parcels.attributes]
    has_values = np.isfinite(x).any(axis=1)
    labelled = np.array([v not in (None, "") for v in raw]) & has_values
    names = sorted({str(v) for v, ok in zip(raw, labelled) if ok})
    if len(names) < 2:
        raise EngineError(
            f"Fewer than two classes in {class_field!r} among parcels with valid pixels: label parcels "
            "of at least two classes."
        )
    y = np.array([names.index(str(v)) if ok else -1 for v, ok in zip(raw, labelled)])
    config = ProbeConfig(kind=settings.classifier, seed=settings.seed)
    train = np.flatnonzero(labelled)

    def fit_predict(fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column no training parcel has: 0 below
            mean = np.nanmean(x[fit_rows], axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        filled = np.where(np.isfinite(x), x, mean)
        classifier = fit_probe(filled[fit_rows], y[fit_rows], len(names), config)
        return classifier.predict_proba(filled[rows])

    # Held-out score on the classes with at least two labelled parcels (a class's only parcel cannot
    # be held out and learnt at once); every labelled parcel outside the test fold trains.
    per_class = np.bincount(y[train], minlength=len(names))
    scored = train[per_class[y[train]] >= 2]
    folds = min(settings.folds, int(per_class[per_class >= 2].max(initial=0)))
    scores = None
    if folds >= 2 and np.unique(y[scored]).size >= 2:
        fold = np.full(len(parcels), -1)
        fold[scored] = parcel_folds(scored.size, folds, settings.seed, y[scored])
        predicted = np.empty(scored.size, int)
        for f in range(folds):
            test = fold[scored] == f
            predicted[test] = fit_predict(train[fold[train] != f], scored[test]).argmax(1)
        kept = sorted(set(y[scored].tolist()))
        remap = {k: i for i, k in enumerate(kept)}
        truth = np.array([remap[k] for k in y[scored]])
        guess = np.array([remap.get(k, len(kept)) for k in predicted])  # another class: wrong for every kept one
        kept_names = [names[k] for k in kept]
        metrics = classification_metrics(confusion_matrix(truth, guess, len(kept) + 1), kept_names + ["other"])
        metrics["macro_f1"] = float(np.mean([metrics["per_class"][n]["f1"] for n in kept_names]))
        scores = {
            "folds": folds,
            "parcels": int(scored.size),
            "classes": kept_names,
            "macro_f1": metrics["macro_f1"],
            "overall_accuracy": metrics["overall_accuracy"],
        }
        reporter.log(
            f"Held-out whole parcels ({folds} folds, {scored.size} parcels of {len(kept)} classes with 2 or "
            f"more): macro-F1 {metrics['macro_f1']:.3f}, overall accuracy {scores['overall_accuracy']:.3f}"
        )
    else:
        reporter.log("Too few labelled parcels for a held-out score (two classes with 2 or more parcels).", "warning")
    probabilities = np.full((len(parcels), len(names)), np.nan)
    usable = np.flatnonzero(has_values)
    probabilities[usable] = fit_predict(train, usable)
    result = parcel_result(probabilities, valid_pixels.astype(float), pixels, parcels.status)
    written = write_parcel_map(
        parcels,
        result,
        names,
        _colors(None, len(names)),
        output,
        output_layer,
        {
            "description": f"{settings.classifier} on per-parcel {settings.feature_set} "
            f"features, fitted on {train.size} labelled parcels"
        },
    )
    return _summary(
        parcels,
        result,
        names,
        written,
        reporter,
        "features",
        held_out=scores,
        feature_columns=len(columns),
        feature_set=settings.feature_set,
    )
