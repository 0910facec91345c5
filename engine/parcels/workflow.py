"""Classify parcels: from a map's per-pixel probabilities, or from per-parcel features of a job's inputs
with a classifier fitted on the parcels that carry a class (scored by whole-parcel cross-validation)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.errors import EngineError
from engine.io.raster import open_raster
from engine.parcels.classify import ParcelStatistics, aggregate_pixels, parcel_result
from engine.parcels.layer import OK, ParcelPixels, Parcels, parcel_pixels, read_parcels, write_parcel_map
from engine.probes.classifiers import ProbeConfig
from engine.probes.classifiers.registry import fit_probe
from engine.probes.features import FeatureSet, detect_radar_db, input_features, read_inputs
from engine.probes.metrics import classification_metrics, confusion_matrix
from engine.probes.probe_file import default_colors
from engine.runtime.progress import Reporter

BLOCK_ROWS = 256  # grid rows read at a time for per-parcel features
# Pixels of one parcel a pixel classifier is fitted on at most (drawn at random): a large field would
# otherwise outweigh the small ones and make fitting slow; predictions still cover every pixel.
FIT_PIXELS_PER_PARCEL = 200
WAYS = ("features", "pixels", "auto")


@dataclass(frozen=True)
class ParcelFeatureSettings:
    feature_set: str = "monthly+stats"
    classifier: str = "random_forest"
    folds: int = 5
    seed: int = 0
    # features: a classifier on per-parcel statistics; pixels: a classifier on the pixels, its probabilities
    # averaged per parcel; auto: the one of the two with the higher held-out macro-F1 on whole-parcel folds.
    way: str = "features"


@dataclass(frozen=True)
class PixelFeatures:
    """The pixel features of every pixel inside a parcel: (N, F) values, (N,) parcel index, (N,) valid."""

    x: np.ndarray
    parcel: np.ndarray
    ok: np.ndarray


def _colors(classes_raster: str | None, n: int) -> list[str]:

    if classes_raster:
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
    job, parcels_path: str, layer: str | None, feature_set: str, reporter: Reporter, keep_pixels: bool = False
) -> tuple[Parcels, ParcelPixels, np.ndarray, list[str], np.ndarray, PixelFeatures | None]:
    """Per parcel, the mean and spread of the pixel features of ``feature_set`` (engine.features) over its
    pixels on the job's output grid: (P, 2F), the column names, each parcel's valid pixel count and, with
    ``keep_pixels``, the features of the parcels' pixels themselves."""
    from engine.mapping.plan import plan_geometry, resolve_inputs  # lazy: torch stays out (pixels way)
    from engine.models.checkpoint import load_checkpoint  # lazy: torch, as above

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
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    steps = reporter.steps((grid.height + BLOCK_ROWS - 1) // BLOCK_ROWS, "Per-parcel features")
    for row in range(0, grid.height, BLOCK_ROWS):
        window = Window(0, row, grid.width, min(BLOCK_ROWS, grid.height - row))
        index = pixels.index[row : row + int(window.height)].ravel()
        if (index >= 0).any():
            inputs, ok = read_inputs(modalities, grid, window)
            if radar_db is None:  # decided once, on the first block, like fit-probe on its labels
                radar_db = detect_radar_db(inputs)
            x, names = input_features(inputs, features, radar_db)
            stats = stats or ParcelStatistics(len(parcels), x.shape[1])
            stats.add(x, index, ok)
            if keep_pixels:
                inside = index >= 0
                kept.append((x[inside].astype(np.float32), index[inside], ok[inside]))
        steps.advance()
    columns = [f"{n}:parcel_mean" for n in names] + [f"{n}:parcel_std" for n in names]
    values = stats.result() if stats else np.full((len(parcels), 0), np.nan, np.float32)
    valid_pixels = stats.pixels if stats else np.zeros(len(parcels), np.int64)
    pixel_features = None
    if keep_pixels:
        width = len(names)
        pixel_features = PixelFeatures(
            np.concatenate([k[0] for k in kept]) if kept else np.zeros((0, width), np.float32),
            np.concatenate([k[1] for k in kept]) if kept else np.zeros(0, int),
            np.concatenate([k[2] for k in kept]) if kept else np.zeros(0, bool),
        )
    return parcels, pixels, values, columns, valid_pixels, pixel_features


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


def _fill(x: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """NaN (a column a row lacks) replaced by the mean of the fitting rows (0 where they lack it too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column no fitting row has: 0 below
        mean = np.nanmean(x[fit_rows], axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return np.where(np.isfinite(x), x, mean)


def feature_predictor(x: np.ndarray, y: np.ndarray, n_classes: int, config):
    """Fit on the per-parcel features of ``fit_rows`` (parcel indices), predict the parcels ``rows``."""

    def predict(fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        filled = _fill(x, fit_rows)
        return fit_probe(filled[fit_rows], y[fit_rows], n_classes, config).predict_proba(filled[rows])

    return predict


def pixel_predictor(pixels: PixelFeatures, y: np.ndarray, n_classes: int, config, seed: int):
    """Fit on the valid pixels of the parcels ``fit_rows`` (at most FIT_PIXELS_PER_PARCEL each), predict every
    valid pixel of the parcels ``rows`` and average its class probabilities per parcel."""

    def predict(fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        fit = []
        for parcel in fit_rows:
            own = np.flatnonzero((pixels.parcel == parcel) & pixels.ok)
            fit.append(
                rng.choice(own, FIT_PIXELS_PER_PARCEL, replace=False) if own.size > FIT_PIXELS_PER_PARCEL else own
            )
        fit_pixels = np.concatenate(fit)
        filled = _fill(pixels.x, fit_pixels)
        classifier = fit_probe(filled[fit_pixels], y[pixels.parcel[fit_pixels]], n_classes, config)
        position = np.full(max(int(pixels.parcel.max(initial=-1)), int(rows.max(initial=0))) + 1, -1)
        position[rows] = np.arange(rows.size)
        target = np.flatnonzero(pixels.ok & (position[pixels.parcel] >= 0))
        sums = np.zeros((rows.size, n_classes))
        np.add.at(sums, position[pixels.parcel[target]], classifier.predict_proba(filled[target]))
        counts = np.bincount(position[pixels.parcel[target]], minlength=rows.size)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, 1.0 / n_classes)

    return predict


def held_out_score(predict, y: np.ndarray, train: np.ndarray, names: list[str], settings: ParcelFeatureSettings):
    """Macro-F1 and overall accuracy of ``predict`` on held-out whole parcels; None when too few parcels.

    Scored on the classes with at least two labelled parcels (a class's only parcel cannot be held out
    and learnt at once); every labelled parcel outside the test fold trains. The folds depend on the
    labels and the seed only: both ways are scored on the same folds."""
    per_class = np.bincount(y[train], minlength=len(names))
    scored = train[per_class[y[train]] >= 2]
    folds = min(settings.folds, int(per_class[per_class >= 2].max(initial=0)))
    if folds < 2 or np.unique(y[scored]).size < 2:
        return None
    fold = np.full(y.size, -1)
    fold[scored] = parcel_folds(scored.size, folds, settings.seed, y[scored])
    predicted = np.empty(scored.size, int)
    for f in range(folds):
        test = fold[scored] == f
        predicted[test] = predict(train[fold[train] != f], scored[test]).argmax(1)
    kept = sorted(set(y[scored].tolist()))
    remap = {k: i for i, k in enumerate(kept)}
    truth = np.array([remap[k] for k in y[scored]])
    guess = np.array([remap.get(k, len(kept)) for k in predicted])  # another class: wrong for every kept one
    kept_names = [names[k] for k in kept]
    metrics = classification_metrics(confusion_matrix(truth, guess, len(kept) + 1), kept_names + ["other"])
    return {
        "folds": folds,
        "parcels": int(scored.size),
        "classes": kept_names,
        "macro_f1": float(np.mean([metrics["per_class"][n]["f1"] for n in kept_names])),
        "overall_accuracy": metrics["overall_accuracy"],
    }


WAY_WORDS = {"features": "a classifier on per-parcel features", "pixels": "pixel predictions averaged per parcel"}


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
    """Fitted on the parcels that carry a class in ``class_field``, applied to every parcel: a classifier on
    per-parcel features (way "features"), or on their pixels with its probabilities averaged per parcel
    ("pixels"), or the better of the two on held-out whole parcels ("auto"); the held-out scores in the
    result."""
    if settings.way not in WAYS:
        raise EngineError(f"Unknown way {settings.way!r} of classifying parcels: choose one of {', '.join(WAYS)}.")
    parcels, pixels, x, columns, valid_pixels, pixel_features = job_parcel_features(
        job, parcels_path, layer, settings.feature_set, reporter, keep_pixels=settings.way != "features"
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
    predictors = {}
    if settings.way != "pixels":
        predictors["features"] = feature_predictor(x, y, len(names), config)
    if settings.way != "features":
        predictors["pixels"] = pixel_predictor(pixel_features, y, len(names), config, settings.seed)
    scores = {}
    for way, predict in predictors.items():
        scores[way] = held_out_score(predict, y, train, names, settings)
        if scores[way] is not None:
            score = scores[way]
            reporter.log(
                f"{WAY_WORDS[way]}: held-out whole parcels ({score['folds']} folds, {score['parcels']} parcels of "
                f"{len(score['classes'])} classes with 2 or more): macro-F1 {score['macro_f1']:.3f}, overall "
                f"accuracy {score['overall_accuracy']:.3f}"
            )
    if all(score is None for score in scores.values()):
        reporter.log("Too few labelled parcels for a held-out score (two classes with 2 or more parcels).", "warning")
    chosen = settings.way
    if chosen == "auto":
        if scores["pixels"] is None:
            chosen = "features"
            reporter.log("auto: no held-out score to choose by; per-parcel features used", "warning")
        else:  # a tie keeps the per-parcel features: one fit per parcel, not per pixel
            chosen = max(("features", "pixels"), key=lambda w: (scores[w]["macro_f1"], w == "features"))
            reporter.log(
                f"auto chose {WAY_WORDS[chosen]} (held-out macro-F1 features "
                f"{scores['features']['macro_f1']:.3f}, pixels {scores['pixels']['macro_f1']:.3f})"
            )
    probabilities = np.full((len(parcels), len(names)), np.nan)
    usable = np.flatnonzero(has_values)
    probabilities[usable] = predictors[chosen](train, usable)
    result = parcel_result(probabilities, valid_pixels.astype(float), pixels, parcels.status)
    written = write_parcel_map(
        parcels,
        result,
        names,
        _colors(None, len(names)),
        output,
        output_layer,
        {
            "description": f"{settings.classifier} on {settings.feature_set} features, "
            f"{WAY_WORDS[chosen]}, fitted on {train.size} labelled parcels"
        },
    )
    return _summary(
        parcels,
        result,
        names,
        written,
        reporter,
        "features" if chosen == "features" else "pixels of the job",
        held_out=scores.get(chosen),
        way=chosen,
        ways=scores,
        feature_columns=len(columns),
        feature_set=settings.feature_set,
    )
