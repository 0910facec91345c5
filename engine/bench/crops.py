"""Crop types in Flanders from fused Sentinel-2 and Sentinel-1 (``python -m engine bench accuracy
--datasets crops``): does radar help, per pixel and per parcel?

Data: the WorldCereal Flanders sample (engine.bench.flanders) written as an analyst has it (GeoTIFFs
per date: S2 10 m + 20 m + SCL, S1 VV/VH in dB) and read through the engine as a job would (bands
in two files, the SCL mask, 20 m bands and S1 resampled onto the 10 m grid, dB converted to the
model's linear power, the 2018 season), cloudy dates of a pixel filled with its clear-date mean
(engine.features.fill_invalid_dates). Labels: the 2018 parcel register's crop codes; a parcel is a
connected region of one code. Classes with fewer than two parcels are left out (a class's only
parcel cannot be held out and learnt at once).

Folds: whole parcels, 5 folds stratified by class over parcels (no parcel split across folds).
Figures per fold: macro-F1 and overall accuracy; the table gives their mean and standard deviation
over the folds, and the same figures pooled over every held-out parcel (pixel) with their number.

Methods, each on S2 alone, S1 alone and S2 + S1:
- ``random forest on raw bands`` (200 trees, scikit-learn defaults, the per-pixel anchor), scored
  per pixel and per parcel (each held-out parcel takes the mean of its pixels' probabilities:
  classify-parcels' pixels way);
- ``random forest on per-parcel features``: the mean and spread over each parcel's pixels of the
  per-month cloud-free medians of every band and index plus their temporal statistics
  (``monthly+stats``: classify-parcels' features way), fitted on the training parcels;
- ``auto`` (pixel level, then its probabilities averaged per parcel): the nested choice of
  engine.validation (the soft vote of the best, as fit-probe --classifier auto) among AUTO_CLASSIFIERS
  on the monthly feature sets (AUTO_SETS).
Then the same with the optical dates of June-August hidden (a cloudy summer): what S1 recovers.
And S1 speckle-filtered: each date's backscatter (linear power) averaged over 3 x 3 pixels (a boxcar,
the simplest multi-look filter, SPECKLE_SIDE fixed before any run, not chosen on the folds), alone, with
S2, and with S2's summer hidden.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy.ndimage import uniform_filter
from sklearn.ensemble import RandomForestClassifier

from engine.bench.common import FIXED_PROBE, summarise
from engine.bench.flanders import FlandersFiles, build, parcel_regions
from engine.io.job import load_job
from engine.mapping.plan import plan_geometry, resolve_inputs
from engine.models.catalog import CatalogEntry, with_modalities
from engine.models.checkpoint import load_checkpoint
from engine.parcels.classify import ParcelStatistics
from engine.parcels.workflow import parcel_folds as folds_of
from engine.probes.classifiers import ProbeConfig
from engine.probes.features import FeatureSet, InputValues, combine, input_features, read_inputs
from engine.probes.fit import MAX_CELLS_PER_CLASS
from engine.probes.folds import SpatialFolds
from engine.probes.metrics import classification_metrics, confusion_matrix
from engine.probes.selection import Candidate, Setup, nested_selection
from engine.probes.sources import gather
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation

SEASON = ("2018-03-01", "2018-10-31")  # the register's year: sowing to harvest of the summer crops
HIDDEN = (6, 7, 8)  # months whose optical dates are hidden in the "cloudy summer" run
FOLDS = 5
SEED = 0
TREES = 200
MIN_PARCELS = 2
SPECKLE_SIDE = 3  # pixels a side of the boxcar that averages each S1 date (20 m data on the 10 m grid)
# auto's candidates here: fit-probe's monthly composites with temporal statistics, not every date's
# bands (710 columns for S2: the nested choice took > 10 min on one loaded core), and its classifiers
# but the MLP (the slowest to fit): 4 candidates, 120 fits per sensor combination.
AUTO_SETS = ("monthly+stats",)
AUTO_CLASSIFIERS = ("linear", "knn", "random_forest", "extra_trees")
# The shipped AnySat's embeddings join auto's candidates for these sensor combinations (the job reads
# whole seasons: the hidden-summer and speckle-filtered inputs exist only inside this benchmark).
EMBEDDED = {"S2": ("s2",), "S1": ("s1_asc",), "S2+S1": ("s2", "s1_asc")}
EMBEDDING_SETS = ("embeddings", "embeddings+monthly+stats")


@dataclass
class Inputs:
    values: dict[str, Any]  # modality -> engine.features.InputValues at the labelled pixels
    y: np.ndarray  # class index per labelled pixel
    parcel: np.ndarray  # parcel number per labelled pixel
    names: list[str]
    rows: np.ndarray  # grid row and column of each labelled pixel
    cols: np.ndarray
    s1_filtered: Any = None  # S1's InputValues at the labelled pixels after the speckle boxcar


def speckle_filtered(item, shape: tuple[int, int]):
    """``item`` (InputValues over the whole grid, linear power) with each date and band averaged over
    SPECKLE_SIDE x SPECKLE_SIDE pixels (missing values left out of the mean)."""

    values = item.values.reshape(*shape, *item.values.shape[1:]).astype(np.float64)
    finite = np.isfinite(values)
    size = (SPECKLE_SIDE, SPECKLE_SIDE, 1, 1)
    sums = uniform_filter(np.where(finite, values, 0.0), size=size, mode="nearest")
    counts = uniform_filter(finite.astype(np.float64), size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    return InputValues(
        item.modality, item.bands, item.dates, mean.reshape(item.values.shape).astype(np.float32), item.valid
    )


def crops_job(files, s2_dates: slice | None = None) -> dict[str, Any]:
    return {
        "model": "anysat-tiny",  # its s2 (10 bands) and s1_asc (VV, VH linear power) specs; no model call
        "modalities": {
            "s2": {
                "parts": [
                    {"files": str(files.s2_10m[0].parent), "bands": ["B2", "B3", "B4", "B8"]},
                    {"files": str(files.s2_20m[0].parent), "bands": ["B5", "B6", "B7", "B8A", "B11", "B12"]},
                ],
                "mask": {"files": str(files.scl[0].parent), "type": "scl"},
            },
            "s1_asc": {"files": str(files.s1[0].parent), "scale": "db_to_linear"},
        },
        "season": list(SEASON),
        "outputs": {"embeddings": str(files.parcels.with_name("unused.tif"))},
    }


def read_labelled(files: FlandersFiles, reporter: Reporter) -> tuple[Inputs, dict[str, Any]]:
    """Every labelled pixel's values, read through the engine's job path."""
    job = load_job(crops_job(files))
    model = load_checkpoint(job.model).model
    modalities = resolve_inputs(job, model, reporter)
    grid = plan_geometry(job, model, modalities).output_grid
    values, ok = read_inputs(modalities, grid, Window(0, 0, grid.width, grid.height))
    with rasterio.open(files.crop_codes) as ds:
        if (ds.transform, ds.width, ds.height) != (grid.transform, grid.width, grid.height):
            raise RuntimeError("the crop codes are not on the job's grid")
        codes = ds.read(1)
    regions = parcel_regions(codes).ravel()
    codes = codes.ravel()
    parcels_per_code = {c: np.unique(regions[codes == c]).size for c in np.unique(codes[codes > 0])}
    kept = sorted(c for c, n in parcels_per_code.items() if n >= MIN_PARCELS)
    pick = np.isin(codes, kept) & ok
    names = [str(c) for c in kept]
    y = np.searchsorted(kept, codes[pick])

    chosen = {v.modality: InputValues(v.modality, v.bands, v.dates, v.values[pick], v.valid[pick]) for v in values}
    radar = speckle_filtered(next(v for v in values if v.modality == "s1_asc"), (grid.height, grid.width))
    filtered = InputValues(radar.modality, radar.bands, radar.dates, radar.values[pick], radar.valid[pick])
    s2_clear = values[0].valid[pick].mean() if values[0].valid is not None else 1.0
    info = {
        "s2_dates": len(modalities["s2"].dates),
        "s1_dates": len(modalities["s1_asc"].dates),
        "season": list(SEASON),
        "classes": names,
        "left_out_classes": {str(c): int(n) for c, n in parcels_per_code.items() if c not in kept},
        "pixels": int(pick.sum()),
        "parcels": int(np.unique(regions[pick]).size),
        "parcels_per_class": {str(c): int(parcels_per_code[c]) for c in kept},
        "s2_clear_share": float(s2_clear),
    }
    cells = np.flatnonzero(pick)
    return Inputs(chosen, y, regions[pick], names, cells // grid.width, cells % grid.width, filtered), info


def shipped_anysat() -> CatalogEntry | None:
    """The shipped AnySat checkpoint with both sensors (its dense level is the 10 m grid)."""
    return next((e for e in with_modalities({"s2", "s1_asc"}) if e.architecture == "anysat"), None)


def shipped_embeddings(
    encoder: CatalogEntry,
    files: FlandersFiles,
    modalities: tuple[str, ...],
    data: Inputs,
    folder: Path,
    reporter: Reporter,
) -> np.ndarray:
    """``encoder``'s dense (10 m) embeddings of the sensors ``modalities`` at the labelled pixels, through
    the embed operation on the crops job (normalised with the inputs' own statistics, as the accuracy
    benchmark does: the checkpoint was trained on another region)."""
    job = crops_job(files)
    folder.mkdir(parents=True, exist_ok=True)
    job = dict(
        job,
        model=str(encoder.path),
        modalities={m: job["modalities"][m] for m in modalities},
        outputs={"embeddings": str(folder / "embeddings.tif"), "embeddings_level": "dense"},
        precision="fp32",
    )
    stats = folder / "normalization.json"
    run_operation("normalization-stats", {"job": job, "output": str(stats)}, reporter)
    run_operation("embed", {"job": dict(job, normalization=str(stats))}, reporter)
    with rasterio.open(job["outputs"]["embeddings"]) as ds:
        with rasterio.open(files.crop_codes) as codes:
            if (ds.transform, ds.width, ds.height) != (codes.transform, codes.width, codes.height):
                raise RuntimeError(f"{encoder.name}'s dense embeddings are not on the crop codes' 10 m grid")
        return gather(ds, data.rows, data.cols)


def hide_summer(item):
    """``item`` without its dates in June-August."""
    keep = [t for t, d in enumerate(item.dates) if dt.date.fromisoformat(d).month not in HIDDEN]
    return InputValues(
        item.modality,
        item.bands,
        tuple(item.dates[t] for t in keep),
        item.values[:, keep],
        None if item.valid is None else item.valid[:, keep],
    )


def parcel_folds(parcel: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fold of every pixel: its parcel's (whole parcels, stratified by class over parcels)."""
    ids = np.unique(parcel)
    cls = np.array([np.bincount(y[parcel == p]).argmax() for p in ids])
    fold_of = dict(zip(ids.tolist(), folds_of(ids.size, FOLDS, SEED, cls).tolist()))
    return np.array([fold_of[p] for p in parcel.tolist()])


def _metrics(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> tuple[float, float]:

    m = classification_metrics(confusion_matrix(truth, predicted, len(names)), names)
    return m["macro_f1"], m["overall_accuracy"]


def per_parcel(probabilities: np.ndarray, parcel: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each parcel's mean pixel probability -> (truth, predicted) per parcel."""
    ids = np.unique(parcel)
    mean = np.stack([probabilities[parcel == p].mean(0) for p in ids])
    truth = np.array([y[parcel == p][0] for p in ids])
    return truth, mean.argmax(1)


def parcel_feature_matrix(values: list, parcel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per parcel, mean and spread of the monthly+stats pixel features (rows in np.unique(parcel) order)."""
    x, _ = input_features(values, FeatureSet.parse("monthly+stats"))
    ids, index = np.unique(parcel, return_inverse=True)
    stats = ParcelStatistics(ids.size, x.shape[1])
    stats.add(x, index, np.ones(len(x), bool))
    return stats.result(), ids


class Scores:
    """Per method, each fold's figures and every held-out prediction (pooled: the figure over all the
    parcels or pixels at once, steadier than a fold's 3-4 parcels)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.rows: dict[str, dict[str, list[float]]] = {}
        self.pooled: dict[str, tuple[list, list]] = {}
        self.choices: dict[str, list[str]] = {}  # sensors -> auto's choice per outer fold

    def add(self, method: str, truth: np.ndarray, predicted: np.ndarray) -> None:
        f1, oa = _metrics(truth, predicted, self.names)
        entry = self.rows.setdefault(method, {"macro_f1": [], "overall_accuracy": []})
        entry["macro_f1"].append(f1)
        entry["overall_accuracy"].append(oa)
        pooled = self.pooled.setdefault(method, ([], []))
        pooled[0].extend(truth.tolist())
        pooled[1].extend(predicted.tolist())

    def pooled_figures(self, method: str) -> dict[str, float]:
        truth, predicted = (np.array(v) for v in self.pooled[method])
        f1, oa = _metrics(truth, predicted, self.names)
        return {"macro_f1": f1, "overall_accuracy": oa, "samples": int(truth.size)}


def evaluate_sensors(
    name: str,
    values: list,
    data: Inputs,
    fold: np.ndarray,
    scores: Scores,
    quick: bool,
    reporter: Reporter,
    with_auto: bool = True,
    embeddings: np.ndarray | None = None,
) -> None:
    """Every method on one combination of sensors (``values``: their InputValues at the labelled pixels;
    ``embeddings``: the shipped encoder's of the same sensors, candidates of auto)."""
    raw, _ = combine(None, values, FeatureSet.parse("raw"))
    parcel_x, parcel_ids = parcel_feature_matrix(values, data.parcel)
    parcel_y = np.array([data.y[data.parcel == p][0] for p in parcel_ids])
    parcel_fold = np.array([fold[data.parcel == p][0] for p in parcel_ids])
    trees = 50 if quick else TREES
    for f in range(FOLDS):
        train, test = fold != f, fold == f
        if not test.any():
            continue
        forest = RandomForestClassifier(n_estimators=trees, random_state=SEED, n_jobs=1).fit(raw[train], data.y[train])
        probabilities = _full_proba(forest, raw[test], len(data.names))
        scores.add(f"{name} | random forest on raw bands | pixels", data.y[test], probabilities.argmax(1))
        scores.add(
            f"{name} | random forest on raw bands | parcels (mean pixel probability)",
            *per_parcel(probabilities, data.parcel[test], data.y[test]),
        )
        ptrain, ptest = parcel_fold != f, parcel_fold == f
        forest = RandomForestClassifier(n_estimators=trees, random_state=SEED, n_jobs=1).fit(
            np.nan_to_num(parcel_x[ptrain]), parcel_y[ptrain]
        )
        scores.add(
            f"{name} | random forest on per-parcel features (monthly+stats) | parcels",
            parcel_y[ptest],
            _full_proba(forest, np.nan_to_num(parcel_x[ptest]), len(data.names)).argmax(1),
        )
    reporter.log(f"{name}: random forests done ({raw.shape[1]} raw columns, {parcel_x.shape[1]} per-parcel columns)")
    if with_auto:
        auto_rows(name, values, data, fold, scores, quick, reporter, embeddings)


def auto_sets(values: list) -> list[str]:
    """AUTO_SETS on every sensor stacked and, with several sensors, on each sensor alone: auto then
    chooses on its inner folds whether to stack them, keep one, or vote one sensor's classifier with
    the other's (late fusion), so a sensor that only adds noise can be left out."""
    if len(values) < 2:
        return list(AUTO_SETS)
    return [*AUTO_SETS, *(f"{s}@{v.modality}" for s in AUTO_SETS for v in values)]


def _full_proba(classifier, x: np.ndarray, n: int) -> np.ndarray:
    """scikit-learn's probabilities on all ``n`` classes (a class absent from training: 0)."""
    out = np.zeros((len(x), n))
    out[:, classifier.classes_] = classifier.predict_proba(x)
    return out


def auto_rows(
    name: str,
    values: list,
    data: Inputs,
    fold: np.ndarray,
    scores: Scores,
    quick: bool,
    reporter: Reporter,
    embeddings: np.ndarray | None = None,
) -> None:
    """fit-probe's ``auto`` per pixel (its nested choice on the training parcels of each outer fold),
    then its probabilities averaged per held-out parcel."""
    names = auto_sets(values) + ([] if embeddings is None else list(EMBEDDING_SETS))
    sets = {s: combine(embeddings, values, FeatureSet.parse(s))[0] for s in names}
    config = ProbeConfig(**FIXED_PROBE, seed=SEED, trees=100)
    setup = Setup(sets, data.y, data.names, config, MAX_CELLS_PER_CLASS, SEED)
    kinds = ("linear", "random_forest") if quick else AUTO_CLASSIFIERS
    grid = [Candidate(k, s) for s in sets for k in kinds]
    folds = SpatialFolds(fold, [fold != f for f in range(FOLDS)], 0, "whole parcels", [])
    started = time.perf_counter()
    selection = nested_selection(setup, grid, folds, data.parcel, data.rows, data.cols)
    reporter.log(
        f"{name}: auto's nested choice in {time.perf_counter() - started:.0f} s; per fold "
        f"{', '.join(c.name for c in selection.chosen_per_fold)}"
    )
    scores.choices[name] = [c.name for c in selection.chosen_per_fold]
    for f in range(FOLDS):
        test = fold == f
        if not test.any():
            continue
        # The fold's pick as the outer cross-validation fitted it (a vote: its members' mean probability).
        pick = selection.chosen_per_fold[f]
        probabilities = np.mean([selection.outer_probabilities[m, f] for m in pick.members], axis=0)
        scores.add(f"{name} | auto | pixels", data.y[test], probabilities.argmax(1))
        scores.add(
            f"{name} | auto | parcels (mean pixel probability)",
            *per_parcel(probabilities, data.parcel[test], data.y[test]),
        )


def run_crops(folder: Path, quick: bool, reporter: Reporter, with_auto: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    files = build(folder)
    data, info = read_labelled(files, reporter)
    reporter.log(f"Flanders crops: {info}")
    fold = parcel_folds(data.parcel, data.y)
    s2, s1 = data.values["s2"], data.values["s1_asc"]
    scores = Scores(data.names)
    combos = {
        "S2": [s2],
        "S1": [s1],
        "S2+S1": [s2, s1],
        "S2, June-August hidden": [hide_summer(s2)],
        "S2+S1, June-August optical hidden": [hide_summer(s2), s1],
        "S1 speckle-filtered": [data.s1_filtered],
        "S2+S1 speckle-filtered": [s2, data.s1_filtered],
        "S2+S1 speckle-filtered, June-August optical hidden": [hide_summer(s2), data.s1_filtered],
    }
    encoder = shipped_anysat() if with_auto and not quick else None
    embedded = {}
    if encoder is not None:
        for name, modalities in EMBEDDED.items():
            embedded[name] = shipped_embeddings(encoder, files, modalities, data, folder / f"embed-{name}", reporter)
        reporter.log(f"{encoder.name}: dense embeddings of {', '.join(embedded)} ({encoder.describe()})")
    for name, values in combos.items():
        evaluate_sensors(name, values, data, fold, scores, quick, reporter, with_auto, embedded.get(name))
    parcels_per_fold = [int(np.unique(data.parcel[fold == f]).size) for f in range(FOLDS)]
    pixels_per_fold = [int((fold == f).sum()) for f in range(FOLDS)]

    return {
        "dataset": "Flanders crops",
        "split": f"{FOLDS} folds of whole parcels",
        **info,
        "parcels_per_fold": parcels_per_fold,
        "pixels_per_fold": pixels_per_fold,
        "hidden_summer_s2_dates": len(hide_summer(s2).dates),
        "seconds": time.perf_counter() - started,
        "methods": {
            m: {**{k: summarise(v) for k, v in s.items()}, "pooled": scores.pooled_figures(m)}
            for m, s in scores.rows.items()
        },
        "auto_choices": scores.choices,
        "encoder": encoder.describe() if encoder else None,
    }


# (fused, optical alone): what adding S1 changes, fold by fold on the same held-out parcels
FUSION_PAIRS = (
    ("S2+S1", "S2"),
    ("S2+S1, June-August optical hidden", "S2, June-August hidden"),
    ("S2+S1 speckle-filtered", "S2"),
    ("S2+S1 speckle-filtered, June-August optical hidden", "S2, June-August hidden"),
)


def fusion_gains(methods: dict[str, Any]) -> list[dict[str, Any]]:
    """Per fused combination, method and level: the macro-F1 of S2 + S1 minus that of S2 alone on
    each fold (the same test parcels), their mean and spread, and how many folds gain or lose."""
    rows = []
    for fused, optical in FUSION_PAIRS:
        for method, figures in methods.items():
            sensors, how, level = method.split(" | ")
            alone = methods.get(f"{optical} | {how} | {level}")
            if sensors != fused or alone is None:
                continue
            gains = np.subtract(figures["macro_f1"]["folds"], alone["macro_f1"]["folds"])
            rows.append(
                {
                    "fused": fused,
                    "optical": optical,
                    "method": how,
                    "level": level,
                    **summarise(gains.tolist()),
                    "folds_up": int((gains > 1e-9).sum()),
                    "folds_down": int((gains < -1e-9).sum()),
                }
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Flanders crops ({result['split']}; {result['parcels']} parcels, {result['pixels']} pixels, classes "
        f"{', '.join(result['classes'])}; S2 {result['s2_dates']} dates ({result['hidden_summer_s2_dates']} "
        f"without June-August), S1 {result['s1_dates']} dates, season "
        f"{result['season'][0]}..{result['season'][1]}; "
        f"parcels per fold {result['parcels_per_fold']})",
        "",
        "| Sensors | Method | Level | Macro-F1 (folds) | OA (folds) | Macro-F1, OA pooled (n) |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in result["methods"].items():
        sensors, how, level = method.split(" | ")
        f1, oa, pooled = s["macro_f1"], s["overall_accuracy"], s["pooled"]
        lines.append(
            f"| {sensors} | {how} | {level} | {f1['mean']:.3f} ± {f1['std']:.3f} | "
            f"{oa['mean']:.3f} ± {oa['std']:.3f} | {pooled['macro_f1']:.3f}, "
            f"{pooled['overall_accuracy']:.3f} ({pooled['samples']}) |"
        )
    lines += [
        "",
        "What adding S1 changes, fold by fold (macro-F1 of S2 + S1 minus S2 alone on the same held-out parcels):",
        "",
        "| S2 + S1 | against | Method | Level | Gain (mean ± sd over folds) | Folds up / down |",
        "|---|---|---|---|---|---|",
    ]
    for g in fusion_gains(result["methods"]):
        lines.append(
            f"| {g['fused']} | {g['optical']} | {g['method']} | {g['level']} | {g['mean']:+.3f} ± {g['std']:.3f} | "
            f"{g['folds_up']} / {g['folds_down']} |"
        )
    if result.get("auto_choices"):
        lines += ["", "auto's choice per outer fold:", ""]
        lines += [f"- {name}: {'; '.join(chosen)}" for name, chosen in result["auto_choices"].items()]
    return "\n".join(lines)
