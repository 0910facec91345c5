"""Honest accuracy of few-label mapping on the real samples (``python -m engine bench accuracy``).

For each dataset of ../shared/data with labels, labels are split into 5 folds of whole
polygons (eo-learn land cover) or of 1 km blocks of points (Peru), so that no test
label has a training label in the same polygon or block. On every fold, with settings
fixed in advance (no tuning on any fold), three classifiers are fitted on the
training folds and scored on the held-out fold:

- the engine's linear probe on per-patch embeddings computed through the product
  path (job -> tiled ``embed`` -> embeddings raster -> labels rasterized on it), at
  each embedding level: fused ``patch``, pre-fusion ``local`` and ``both``
  (one "both" raster per encoder, split into its patch and local halves); for AnySat
  encoders also at the ``dense`` level (per sub-patch: on 10 m Sentinel-2 with 10 m
  patches a sub-patch is a label cell) with the dense probe, LayerNorm + linear (the
  segmentation head), when the sub-patch grid is the label grid;
- a random forest (scikit-learn, 200 trees, otherwise default) on the raw bands of
  every date at the same cells: the classic QGIS plugins' per-pixel baseline;
- the same linear probe on the raw bands, which separates the encoder's contribution
  from the classifier's;
- every classifier of ``auto``'s grid (engine.probes.fit.AUTO_CLASSIFIERS: linear, MLP, kNN,
  random forest and extra trees, class-weighted, at most MAX_CELLS_PER_CLASS training cells
  per class and fit) on the feature sets fit-probe offers: raw bands, raw bands with what
  engine.probes.features derives from them (temporal statistics for a series, spectral indices where
  the bands allow), and the first encoder's local embeddings with the raw bands; and
  ``auto``, the nested choice among them (engine.probes.selection.nested_selection: the soft vote of
  the best candidates on inner folds of each outer fold's training part, scored on the outer
  fold), which is what fit-probe --classifier auto does.

Datasets: eo-learn's five Sentinel-2 L1C dates (whole-polygon folds), the same polygons on
eo-learn's 68-date NDVI series (a real scene where the temporal signal matters; no encoder
reads one index band, so only the classifiers on its values), the Peru points, and the Flanders
crops (engine.bench.crops: Sentinel-2 + Sentinel-1 per pixel and per parcel, whole-parcel folds).
``--datasets`` picks some (e.g. ``--datasets crops``).

Folds are buffered (engine.probes.folds): training cells within one cell of a test cell are
left out of that fold's training, for every method.

Encoders: every checkpoint under resources/models with a Sentinel-2 modality, each
next to the same architecture with random weights (what pretraining adds); without
any checkpoint, a randomly initialised OmniSat. The output names each. All methods
share the label cells and the folds. Figures: overall accuracy and macro-F1, mean
and standard deviation over the folds.

Independent test area (both eo-learn rows): the nested estimate of ``auto`` on the western half of
the labels next to the score, on the eastern half, of the probe it chooses and fits on
the western half: does the held-out estimate hold on ground it never saw?
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from engine.bench.common import FIXED_PROBE, summarise, write_raster
from engine.bench.crops import markdown as crops_markdown
from engine.bench.crops import run_crops
from engine.errors import EngineError
from engine.io.job import load_job
from engine.mapping.levels import level
from engine.models.catalog import best_encoder, with_modalities
from engine.models.modalities import sensor
from engine.probes.classifiers import ProbeConfig, fit_probe
from engine.probes.features import FeatureSet, InputValues, available_indices, combine, fill_invalid_dates
from engine.probes.fit import AUTO, MAX_CELLS_PER_CLASS, candidate_grid
from engine.probes.folds import BUFFER_CELLS, FOLDS, spatial_folds
from engine.probes.metrics import classification_metrics, confusion_matrix
from engine.probes.selection import Candidate, Setup, nested_selection
from engine.probes.sources import gather, labelled_embeddings
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
SEED = 0  # folds, probes and forests
RF_TREES = 200
# Sentinel-2 L1C band order of eo-learn's REFERENCE_SCENES.
L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# Landsat-8 bands 2-7 (blue, green, red, NIR, SWIR1, SWIR2) placed on the S2 band slots
# B2 B3 B4 B5 B6 B7 B8 B8A B11 B12: red-edge B5 takes red, B6/B7/B8A take NIR.
L8_ON_S2 = [1, 2, 3, 3, 4, 4, 4, 4, 5, 6]
LEVEL = "both"  # [patch, local]: one embedding run gives every level's features
CHOICE_TREES = 100  # random forest trees / boosting rounds of the candidates (the anchor keeps RF_TREES)
AUTO_METHOD = "auto: nested choice (soft vote of the best) among the classifier x feature set rows above"
DENSE_METHOD = "dense probe (LayerNorm + linear) on dense embeddings"


@dataclass
class Dataset:
    name: str
    description: str
    job: dict[str, Any]  # modalities etc.; model and outputs are filled in
    raw_files: list[Path]  # raster files whose bands (all dates) are the baseline's features
    labels: Path
    class_field: str
    ignore_values: tuple[str, ...]
    block_size_m: float  # point blocks; 0 for polygons (grouped by polygon)
    split: str
    raw_modality: str  # sensor of the raw bands, for indices (engine.probes.features)
    raw_bands: tuple[str, ...]  # band names of one raw file
    # Embed one model tile around each labelled cell instead of the whole raster (sparse points
    # over a large area: the same windows tiled inference would run there, at a fraction of the cost).
    windows_around_labels: bool = False
    independent_half: bool = False  # also score west-fitted probes on the eastern half
    embedded: bool = True  # False: an input no encoder reads (one index band); classifiers on its values only


def eolearn_dataset(folder: Path) -> Dataset:
    source = SHARED_DATA / "eolearn_patch"
    scenes = np.load(source / "REFERENCE_SCENES.npy", allow_pickle=False)  # (5, 101, 100, 13) reflectance
    stamps = json.loads((source / "TestEOPatch/timestamps.json").read_text())[: scenes.shape[0]]
    ring = json.loads((source / "TestEOPatch/bbox.geojson").read_text())["coordinates"][0]
    transform = Affine(10.0, 0, min(p[0] for p in ring), 0, -10.0, max(p[1] for p in ring))

    idx = [L1C_BANDS.index(b) for b in sensor("s2").bands]
    files = []
    for t, stamp in enumerate(stamps):
        data = np.ascontiguousarray(np.moveaxis(scenes[t][..., idx], -1, 0) * 10000.0).astype(np.float32)
        files.append(write_raster(folder / f"S2_{stamp[:10].replace('-', '')}.tif", data, "EPSG:32633", transform))
    return Dataset(
        name="eo-learn land cover",
        description="Slovenia, 1 km2, Sentinel-2 L1C x 5 dates (2015-07..09), 10 bands, 10 m; 84 LULC polygons, 5 classes",
        job={"modalities": {"s2": {"files": [str(f) for f in files], "dates": [s[:10] for s in stamps]}}},
        raw_files=files,
        labels=source / "TestEOPatch/vector_timeless/LULC.gpkg",
        class_field="LULC_ID",
        ignore_values=("0",),
        block_size_m=0.0,
        split="5 folds of whole polygons",
        raw_modality="s2",
        raw_bands=sensor("s2").bands,
        independent_half=True,
    )


def eolearn_series_dataset(folder: Path) -> Dataset:
    """eo-learn's 68-date NDVI series with its cloud mask: where the temporal signal matters."""
    source = SHARED_DATA / "eolearn_patch" / "TestEOPatch"
    ndvi = np.load(source / "data/NDVI.npy", allow_pickle=False)[..., 0]  # (68, 101, 100)
    valid = np.load(source / "mask/IS_VALID.npy", allow_pickle=False)[..., 0]
    stamps = json.loads((source / "timestamps.json").read_text())
    ring = json.loads((source / "bbox.geojson").read_text())["coordinates"][0]
    transform = Affine(10.0, 0, min(p[0] for p in ring), 0, -10.0, max(p[1] for p in ring))
    t, h, w = ndvi.shape
    # Cloudy dates of a cell take its mean over its clear dates, as the engine's input features do.
    filled, _ = fill_invalid_dates(ndvi.reshape(t, -1).T[:, :, None], valid.reshape(t, -1).T)
    data = np.ascontiguousarray(filled[:, :, 0].T.reshape(t, h, w)).astype(np.float32)
    path = write_raster(folder / "NDVI_series.tif", data, "EPSG:32633", transform, nodata=np.nan)
    return Dataset(
        name="eo-learn NDVI series",
        description=f"the same 1 km2 and polygons, Sentinel-2 NDVI x {t} dates ({stamps[0][:10]}..{stamps[-1][:10]}), "
        f"cloudy dates ({100 * (1 - valid.mean()):.0f}%) filled with the cell's clear-date mean; no encoder "
        "reads one index band, so classifiers on the series only",
        job={"modalities": {"ndvi": {"dates": [s[:10] for s in stamps]}}},
        raw_files=[path],
        labels=source / "vector_timeless/LULC.gpkg",
        class_field="LULC_ID",
        ignore_values=("0",),
        block_size_m=0.0,
        split="5 folds of whole polygons",
        raw_modality="ndvi",
        raw_bands=("NDVI",),
        independent_half=True,
        embedded=False,
    )


def peru_dataset(folder: Path) -> Dataset:
    source = SHARED_DATA / "l8_s1_peru"
    image = source / "LC08_232066_20190727.tif"
    return Dataset(
        name="Peru points",
        description="Madre de Dios, Landsat-8 2019-07-27, 6 bands at 30 m (read on a 10 m grid); 91 points, 4 classes",
        job={"modalities": {"s2": {"files": [str(image)], "dates": ["2019-07-27"], "bands": L8_ON_S2}}},
        raw_files=[image],
        labels=source / "endmembers.shp",
        class_field="class",
        ignore_values=(),
        block_size_m=1000.0,
        split="5 folds of 1 km blocks of points",
        raw_modality="l8",
        raw_bands=("B2", "B3", "B4", "B5", "B6", "B7"),
        windows_around_labels=True,
    )


@dataclass
class GridView:
    """The attributes of a raster dataset that label rasterization needs."""

    crs: Any
    transform: Affine
    width: int
    height: int


def label_grid(job: dict[str, Any]) -> GridView:
    """The patch grid tiled inference would use for the whole job."""
    from engine.mapping.plan import plan_geometry, resolve_inputs  # lazy: keeps torch out of --help
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    parsed = load_job(job)
    model = load_checkpoint(parsed.model).model
    grid = plan_geometry(parsed, model, resolve_inputs(parsed, model)).patch_grid
    return GridView(grid.crs, grid.transform, grid.width, grid.height)


def embed_around(job: dict[str, Any], grid: GridView, rows: np.ndarray, cols: np.ndarray, folder: Path) -> np.ndarray:
    """Embeddings at the given cells, each from one model tile (job extent) centred on its cell."""
    from engine.mapping.plan import DEFAULT_TILE_PATCHES  # lazy: keeps torch out of --help
    from engine.mapping.run import run_map  # lazy: keeps torch out of --help
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    loaded = load_checkpoint(job["model"])
    tile = loaded.model.default_window() or DEFAULT_TILE_PATCHES
    out = np.full((rows.size, level(LEVEL).width(loaded.model.embed_dim)), np.nan, np.float32)
    target = folder / "window.tif"
    for i, (row, col) in enumerate(zip(rows, cols)):
        r0 = int(np.clip(row - tile // 2, 0, grid.height - tile))
        c0 = int(np.clip(col - tile // 2, 0, grid.width - tile))
        x0, y1 = grid.transform * (c0, r0)
        x1, y0 = grid.transform * (c0 + tile, r0 + tile)
        window_job = dict(
            job, extent={"bounds": [x0, y0, x1, y1]}, outputs={"embeddings": str(target), "embeddings_level": LEVEL}
        )
        run_map(load_job(window_job), Reporter(), loaded.model, None, loaded.metadata)
        with rasterio.open(target) as ds:
            r, c = ds.index(*(grid.transform * (col + 0.5, row + 0.5)))
            out[i] = ds.read()[:, r, c]
    return out


def raster_grid(path: Path) -> GridView:
    with rasterio.open(path) as ds:
        return GridView(ds.crs, ds.transform, ds.width, ds.height)


def raw_features(files: list[Path], transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Every band of every file at the centres of the given cells of ``transform``'s grid."""
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    columns = []
    for path in files:
        with rasterio.open(path) as ds:
            data = ds.read().astype(np.float32)
            r, c = rasterio.transform.rowcol(ds.transform, xs, ys)
            r, c = np.asarray(r), np.asarray(c)
            if ds.nodata is not None:
                data[data == ds.nodata] = np.nan
            columns.append(data[:, r, c].T)
    return np.concatenate(columns, axis=1)


@dataclass
class Encoder:
    name: str  # short, for the table
    path: Path
    description: str


def encoders(folder: Path, reporter: Reporter, quick: bool) -> list[Encoder]:
    """Every checkpoint under resources/models with an s2 modality, each followed by the same
    architecture with random weights (what pretraining adds); without any, a random OmniSat."""
    import torch  # lazy: keeps torch out of --help

    from engine.models.checkpoint import read_metadata, save_checkpoint  # lazy: keeps torch out of --help
    from engine.models.registry import build_model  # lazy: keeps torch out of --help

    found = [
        Encoder(
            e.name,
            e.path,
            f"{e.path.name}, pretrained ({e.provenance.get('steps')} steps, {e.metadata.get('provenance')})",
        )
        for e in with_modalities({"s2"})
    ]
    if not found:
        path, text = best_encoder(folder, reporter, {"s2"})
        return [Encoder("random omnisat-treesatai", path, text)]
    chosen = found[:1] if quick else found
    result = []
    for encoder in chosen:
        result.append(encoder)
        if quick:
            continue
        torch.manual_seed(SEED)
        twin = build_model(read_metadata(encoder.path)["config"]).eval()
        path = folder / f"{encoder.name}-random.safetensors"
        save_checkpoint(path, twin, provenance={"weights": f"random initialisation, torch seed {SEED}"})
        result.append(
            Encoder(
                f"{encoder.name}, random weights",
                path,
                f"the architecture of {encoder.path.name} with random weights (torch seed {SEED})",
            )
        )
    return result


def labelled_cells(dataset: Dataset, grid, reporter: Reporter):
    """The dataset's labels rasterised on ``grid`` (engine.probes.sources.labelled_embeddings, without
    features: every method reads its own at these cells)."""
    return labelled_embeddings(
        grid,
        str(dataset.labels),
        dataset.class_field,
        None,
        dataset.ignore_values,
        0.5,
        dataset.block_size_m,
        reporter,
        lambda r, c: np.zeros((r.size, 1), np.float32),
    )


def encoder_job(dataset: Dataset, encoder: Encoder, folder: Path) -> dict[str, Any]:
    job = dict(
        dataset.job,
        model=str(encoder.path),
        outputs={"embeddings": str(folder / "embeddings.tif"), "embeddings_level": LEVEL},
        precision="fp32",
        batch_size=16,
    )
    # The inputs' own statistics: L1C and Landsat differ from the checkpoint's training data.
    stats = folder / "normalization.json"
    run_operation("normalization-stats", {"job": job, "output": str(stats)})
    job["normalization"] = str(stats)
    return job


def embed_cells(
    dataset: Dataset,
    job: dict[str, Any],
    grid: GridView,
    rows: np.ndarray,
    cols: np.ndarray,
    folder: Path,
    reporter: Reporter,
) -> np.ndarray:
    """An encoder's embeddings at the labelled cells, computed through tiled inference."""
    if dataset.windows_around_labels:
        return embed_around(job, grid, rows, cols, folder)
    run_operation("embed", {"job": job}, reporter)
    with rasterio.open(job["outputs"]["embeddings"]) as ds:
        if (ds.transform, ds.width, ds.height) != (grid.transform, grid.width, grid.height):
            raise EngineError(f"The embeddings of {job['model']} are not on the labels' grid.")
        return gather(ds, rows, cols)


def embed_dense(
    encoder: Encoder,
    dataset: Dataset,
    job: dict[str, Any],
    grid: GridView,
    rows: np.ndarray,
    cols: np.ndarray,
    reporter: Reporter,
) -> np.ndarray | None:
    """An AnySat encoder's dense embeddings at the labelled cells, through tiled inference; None for
    other encoders, sparse-point datasets, or a sub-patch grid other than the label grid."""
    from engine.models.checkpoint import read_metadata  # lazy: keeps torch out of --help

    if dataset.windows_around_labels or read_metadata(encoder.path)["config"].get("architecture") != "anysat":
        return None
    path = Path(job["outputs"]["embeddings"]).with_name("dense.tif")
    run_operation("embed", {"job": dict(job, outputs={"embeddings": str(path), "embeddings_level": "dense"})}, reporter)
    with rasterio.open(path) as ds:
        if (ds.transform, ds.width, ds.height) != (grid.transform, grid.width, grid.height):
            reporter.log(f"{encoder.name}: its sub-patch grid is not the label grid; no dense row.", "warning")
            return None
        return gather(ds, rows, cols)


def evaluate(dataset: Dataset, models: list[Encoder], folder: Path, quick: bool, reporter: Reporter) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier  # lazy: keeps scikit-learn out of --help

    # One label grid and one set of folds for every method (all encoders use 10 m patches).
    jobs = []
    for i, encoder in enumerate(models if dataset.embedded else []):
        work = folder / f"encoder{i}"
        work.mkdir()
        jobs.append(encoder_job(dataset, encoder, work))
    grid = label_grid(jobs[0]) if jobs else raster_grid(dataset.raw_files[0])
    data = labelled_cells(dataset, grid, reporter)
    samples = data.samples
    features, dense, seconds = {}, {}, {}
    for encoder, job in zip(models, jobs):
        reporter.log(f"{dataset.name}: embedding with {encoder.name}")
        started = time.perf_counter()
        features[encoder.name] = embed_cells(
            dataset, job, grid, samples.rows, samples.cols, Path(job["outputs"]["embeddings"]).parent, reporter
        )
        seconds[encoder.name] = time.perf_counter() - started
        started = time.perf_counter()
        x = embed_dense(encoder, dataset, job, grid, samples.rows, samples.cols, reporter)
        if x is not None:
            dense[encoder.name] = x
            seconds[f"{encoder.name}, dense"] = time.perf_counter() - started
    raw = raw_features(dataset.raw_files, grid.transform, samples.rows, samples.cols)
    keep = np.isfinite(raw).all(axis=1)
    for x in (*features.values(), *dense.values()):
        keep &= np.isfinite(x).all(axis=1)
    y, units, raw = samples.y[keep], data.units[keep], raw[keep]
    rows, cols = samples.rows[keep], samples.cols[keep]
    features = {k: v[keep] for k, v in features.items()}
    dense = {k: v[keep] for k, v in dense.items()}
    names = list(samples.class_names)
    folds = spatial_folds(y, units, rows, cols, FOLDS, BUFFER_CELLS, SEED, dataset.split)
    config = ProbeConfig(**FIXED_PROBE, seed=SEED)
    dense_config = ProbeConfig(**FIXED_PROBE, seed=SEED, layer_norm=True)
    scores: dict[str, dict[str, list[float]]] = {}

    def record(method: str, truth: np.ndarray, predicted: np.ndarray) -> None:
        metrics = classification_metrics(confusion_matrix(truth, predicted, len(names)), names)
        entry = scores.setdefault(method, {"overall_accuracy": [], "macro_f1": []})
        entry["overall_accuracy"].append(metrics["overall_accuracy"])
        entry["macro_f1"].append(metrics["macro_f1"])

    levels = {}  # method name -> (features, probe settings); "both" rasters hold [patch, local]
    for name, x in features.items():
        half = x.shape[1] // 2
        levels[f"probe on embeddings: {name}"] = (x[:, :half], config)
        levels[f"probe on local embeddings: {name}"] = (x[:, half:], config)
        levels[f"probe on patch+local embeddings: {name}"] = (x, config)
        if name in dense:
            levels[f"{DENSE_METHOD}: {name}"] = (dense[name], dense_config)
    for fold in range(folds.n_folds):
        test, train = folds.test(fold), folds.train[fold]
        for method, (x, settings) in levels.items():
            probe = fit_probe(x[train], y[train], len(names), settings)
            record(method, y[test], probe.predict(x[test]))
        forest = RandomForestClassifier(n_estimators=50 if quick else RF_TREES, random_state=SEED, n_jobs=1)
        forest.fit(raw[train], y[train])
        record("random forest on raw bands", y[test], forest.predict(raw[test]))
        raw_probe = fit_probe(raw[train], y[train], len(names), config)
        record("probe on raw bands", y[test], raw_probe.predict(raw[test]))
        reporter.progress(100.0 * (fold + 1) / FOLDS, f"{dataset.name}: fold {fold + 1}/{FOLDS}")
    first = next(iter(features), None)
    local = features[first][:, features[first].shape[1] // 2 :] if first else None
    choice = classifier_choice(dataset, raw, local, y, units, rows, cols, folds, names, quick, reporter)
    if first:
        choice["embeddings"] = f"local embeddings of {first}"
    for method, entry in choice.pop("rows").items():
        scores[method] = entry
    return {
        "dataset": dataset.name,
        "description": dataset.description,
        "split": dataset.split,
        "classes": names,
        "cells_per_class": dict(zip(names, np.bincount(y, minlength=len(names)).tolist())),
        "units": int(np.unique(units).size),
        "test_cells_per_fold": [int(folds.test(f).sum()) for f in range(folds.n_folds)],
        "training_cells_buffered_out_per_fold": folds.buffered_out(),
        "grid": {"width": grid.width, "height": grid.height, "cell_m": abs(grid.transform.a)},
        "embedding_dims": {k: int(v.shape[1]) for k, v in features.items()},
        "dense_embedding_dims": {k: int(v.shape[1]) for k, v in dense.items()},
        "raw_features": int(raw.shape[1]),
        "embed_seconds": seconds,
        **choice,
        "methods": {m: {k: summarise(v) for k, v in s.items()} for m, s in scores.items()},
    }


def choice_feature_sets(dataset: Dataset, raw: np.ndarray, local: np.ndarray | None) -> dict[str, np.ndarray]:
    """The feature sets the classifier choice picks from, under fit-probe's names (engine.probes.features):
    raw bands (``raw``), raw bands with what engine.probes.features derives from them (``stats``, temporal
    statistics, for a series; ``indices`` where the bands allow) and, with an encoder, its local
    embeddings with the raw bands (``embeddings+raw``)."""
    dates = tuple(next(iter(dataset.job["modalities"].values()))["dates"])
    values = [InputValues(dataset.raw_modality, dataset.raw_bands, dates, raw.reshape(len(raw), len(dates), -1))]
    derived = (["stats"] if len(dates) >= 2 else []) + (
        ["indices"] if available_indices(dataset.raw_modality, dataset.raw_bands) else []
    )
    names = (
        ["raw"] + (["+".join(["raw", *derived])] if derived else []) + (["embeddings+raw"] if local is not None else [])
    )
    return {name: combine(local, values, FeatureSet.parse(name))[0] for name in names}


def choice_grid(sets: dict[str, np.ndarray], quick: bool):
    if quick:  # the plumbing only: two cheap classifiers
        return [Candidate(kind, name) for name in sets for kind in ("linear", "knn")]
    return candidate_grid(AUTO, list(sets))


def classifier_choice(
    dataset: Dataset,
    raw: np.ndarray,
    local: np.ndarray | None,
    y: np.ndarray,
    units: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    folds,
    names: list[str],
    quick: bool,
    reporter: Reporter,
) -> dict[str, Any]:
    """Every candidate classifier x feature set on the shared folds, the nested ``auto`` choice among
    them and, for datasets marked so, the independent-area check."""
    sets = choice_feature_sets(dataset, raw, local)
    setup = Setup(sets, y, names, ProbeConfig(**FIXED_PROBE, seed=SEED, trees=CHOICE_TREES), MAX_CELLS_PER_CLASS, SEED)
    grid = choice_grid(sets, quick)
    reporter.log(f"{dataset.name}: nested choice among {len(grid)} candidates")
    selection = nested_selection(setup, grid, folds, units, rows, cols, reporter)
    table = {
        c.name: {"overall_accuracy": s.overall_accuracy, "macro_f1": s.macro_f1}
        for c, s in selection.candidates.items()
    }
    table[AUTO_METHOD] = {"overall_accuracy": selection.nested.overall_accuracy, "macro_f1": selection.nested.macro_f1}
    result: dict[str, Any] = {
        "rows": table,
        "auto_choice_per_fold": [c.name for c in selection.chosen_per_fold],
        "auto_final_choice": selection.final.name,
        "feature_set_widths": {k: int(v.shape[1]) for k, v in sets.items()},
    }
    if dataset.independent_half:
        result["independent_area"] = independent_area(setup, grid, units, rows, cols, names, reporter)
    return result


def independent_area(
    setup, grid, units: np.ndarray, rows: np.ndarray, cols: np.ndarray, names: list[str], reporter: Reporter
) -> dict[str, Any]:
    """The nested estimate of ``auto`` on the western half of the labels against the score of its
    choice, fitted on the whole western half, on the eastern half (cells within the buffer of the
    dividing line left out)."""
    middle = (int(cols.min()) + int(cols.max()) + 1) // 2
    west, east = cols < middle, cols >= middle + BUFFER_CELLS
    part = Setup(
        {k: v[west] for k, v in setup.features.items()},
        setup.y[west],
        names,
        setup.config,
        setup.max_per_class,
        setup.seed,
    )
    folds = spatial_folds(part.y, units[west], rows[west], cols[west], FOLDS, BUFFER_CELLS, SEED)
    reporter.log("eo-learn: independent-area check (west half chooses and fits, east half scores)")
    selection = nested_selection(part, grid, folds, units[west], rows[west], cols[west], reporter)
    chosen = selection.final
    predicted = setup.fit_predict(chosen, west, east, np.random.default_rng(SEED))
    metrics = classification_metrics(confusion_matrix(setup.y[east], predicted, len(names)), names)
    estimate = selection.nested.summary()
    gap = metrics["macro_f1"] - estimate["macro_f1"]["mean"]
    return {
        "west_cells": int(west.sum()),
        "east_cells": int(east.sum()),
        "choice": chosen.name,
        "west_nested_estimate": estimate,
        "east_score": {"macro_f1": metrics["macro_f1"], "overall_accuracy": metrics["overall_accuracy"]},
        "macro_f1_gap": gap,
        "gap_in_fold_std": gap / max(estimate["macro_f1"]["std"], 1e-9),
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| Dataset (split) | Method | Macro-F1 | Overall accuracy |", "|---|---|---|---|"]
    for r in results:
        for method, s in r["methods"].items():
            f1, oa = s["macro_f1"], s["overall_accuracy"]
            lines.append(
                f"| {r['dataset']} ({r['split']}) | {method} | {f1['mean']:.3f} ± {f1['std']:.3f} "
                f"| {oa['mean']:.3f} ± {oa['std']:.3f} |"
            )
    for r in (r for r in results if "auto_final_choice" in r):
        lines.append(
            f"\n{r['dataset']}: auto chose per outer fold {', '.join(r['auto_choice_per_fold'])}; "
            f"on all labels {r['auto_final_choice']}."
        )
        check = r.get("independent_area")
        if check:
            estimate = check["west_nested_estimate"]["macro_f1"]
            lines.append(
                f"Independent area: auto's nested estimate on the western half, macro-F1 {estimate['mean']:.3f} "
                f"± {estimate['std']:.3f}; its choice ({check['choice']}) fitted on the western half scores "
                f"{check['east_score']['macro_f1']:.3f} (overall accuracy {check['east_score']['overall_accuracy']:.3f}) "
                f"on the eastern half: {check['gap_in_fold_std']:+.1f} fold standard deviations."
            )
    return "\n".join(lines)


def run(params, reporter: Reporter) -> dict[str, Any]:
    if not SHARED_DATA.is_dir():
        raise EngineError(
            f"The real samples are not at {SHARED_DATA}: this benchmark needs ../shared/data beside the project."
        )
    try:
        import sklearn  # noqa: F401  (the baseline)
        from threadpoolctl import threadpool_limits  # lazy: comes with scikit-learn, which only the baseline needs
    except ImportError:
        raise EngineError(
            "The accuracy benchmark needs scikit-learn for its random-forest baseline: pip install scikit-learn."
        ) from None
    import torch  # lazy: keeps torch out of --help

    results, crops = [], None
    named = {"eolearn": eolearn_dataset, "ndvi": eolearn_series_dataset, "peru": peru_dataset}
    chosen = [d.strip() for d in (params.datasets or "").split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(named) - {"crops"})
    if unknown:
        raise EngineError(
            f"Unknown dataset(s) {', '.join(unknown)} for the accuracy benchmark: choose among "
            f"{', '.join([*named, 'crops'])}."
        )
    # scikit-learn's OpenMP and BLAS pools keep to torch's thread count (--threads): by default they
    # take every core, which on loaded cores stalls every parallel loop.
    with threadpool_limits(torch.get_num_threads()), tempfile.TemporaryDirectory(prefix="omnisat-accuracy-") as tmp:
        folder = Path(tmp)
        builders = (
            [named[d] for d in chosen if d in named]
            if chosen
            else [eolearn_dataset]
            if params.quick
            else list(named.values())
        )
        models = encoders(folder, reporter, params.quick) if builders else []
        reporter.log("Encoders:\n" + "\n".join(f"  {e.name}: {e.description}" for e in models))
        for build in builders:
            work = folder / build.__name__
            work.mkdir()
            dataset = build(work)
            reporter.log(f"{dataset.name}: {dataset.description}; {dataset.split}")
            results.append(evaluate(dataset, models, work, params.quick, reporter))
            # Each dataset's rows as soon as they exist: a run stopped later keeps them.
            reporter.log(markdown_table(results[-1:]))
        if "crops" in chosen or not (chosen or params.quick):
            work = folder / "crops"
            work.mkdir()
            crops = run_crops(work, params.quick, reporter)
            reporter.log(crops_markdown(crops))
    table = "\n\n".join(([markdown_table(results)] if results else []) + ([crops_markdown(crops)] if crops else []))
    trees = 50 if params.quick else RF_TREES
    reporter.log(
        "Encoders:\n"
        + "\n".join(f"  {e.name}: {e.description}" for e in models)
        + f"\nProbe settings (fixed, not tuned): {FIXED_PROBE}, with a LayerNorm first for the {DENSE_METHOD}; "
        f"random forest: {trees} trees, "
        f"scikit-learn defaults otherwise\n\n{table}"
    )
    return {
        "encoders": {e.name: e.description for e in models},
        "probe_settings": FIXED_PROBE,
        "folds": FOLDS,
        "seed": SEED,
        "rf_trees": trees,
        "results": results,
        "crops": crops,
        "markdown": table,
    }
