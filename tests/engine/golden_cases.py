"""Recorded outputs of the mapping operations on the real samples, to keep behaviour fixed.

Each case runs one operation (classify, embed at every level, fit-probe, apply-probe,
change) on a small extent of the real samples in ``../shared/data`` with the shipped
checkpoints (plus seeded heads) and returns its rasters and its result summary.
``python -m tests.engine.golden_cases RECORD_DIR`` records them (``tests/engine/data/golden``,
see its README); ``test_golden.py`` runs the cases again and compares.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio
import torch

from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.models.heads import HeadConfig, build_head
from engine.runtime.registry import run_operation
from tests.engine.raster_fixtures import L1C_BANDS, eolearn_corner, write_described

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
TREESAT = "treesatai_sample/Abies_alba_1_1005_WEFL_NLF"
S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
CLASSES = ["conifer", "broadleaf", "open"]
COLORS = ["#00441b", "#74c476", "#fee391"]
# Result keys that depend on the machine or the run's folder, not on the outputs.
UNSTABLE = (
    "seconds",
    "model_seconds",
    "report",
    "output",
    "probe",
    "probe_output",
    "magnitude",
    "change",
    "classes",
    "confidence",
    "probabilities",
    "embeddings",
)


def with_head(name: str, kind: str, folder: Path) -> str:
    """A shipped checkpoint with a seeded head of ``kind`` (the shipped ones have none)."""
    loaded = load_checkpoint(MODELS / name)
    torch.manual_seed(7)
    width = 2 * loaded.model.embed_dim if kind == "dense" else loaded.model.embed_dim
    head = build_head(HeadConfig(kind, width, len(CLASSES)))
    path = folder / f"{Path(name).stem}-{kind}.safetensors"
    save_checkpoint(path, loaded.model, head=head, classes=CLASSES, colors=COLORS, provenance={"weights": "golden"})
    return str(path)


def treesat_inputs(shared: Path, folder: Path) -> dict[str, Any]:
    """The TreeSatAI tile's aerial image, 12 Sentinel-2 dates with cloud masks, 8 Sentinel-1 dates."""
    aerial = shared / f"{TREESAT}.tif"
    with rasterio.open(aerial) as ds:
        corner, crs = (ds.bounds.left, ds.bounds.top), ds.crs.to_string()
    with h5py.File(shared / f"{TREESAT}.h5", "r") as f:
        s2, clouds = f["sen-2-data"][:12], f["sen-2-masks"][:12, 1]
        s2_names = [p.decode() for p in f["sen-2-products"][:12]]
        s1, s1_names = f["sen-1-asc-data"][:8], [p.decode() for p in f["sen-1-asc-products"][:8]]
    s2_files, masks, s1_files = [], [], []
    for t, name in enumerate(s2_names):
        s2_files.append(str(write_described(folder / f"{name}.tif", s2[t], corner, crs=crs, descriptions=S2_BANDS)))
        masks.append(str(write_described(folder / f"cloud_{t:02d}.tif", clouds[t][None], corner, crs=crs)))
    for name in s1_names:
        s1_files.append(
            str(
                write_described(
                    folder / f"{name}.tif", s1[s1_names.index(name)], corner, crs=crs, descriptions=("VV", "VH")
                )
            )
        )
    return {
        "aerial": {"files": str(aerial)},
        "s2": {"files": s2_files, "mask": {"files": masks, "type": "probability", "threshold": 50}},
        "s1_asc": {"files": s1_files},
    }


def eolearn_inputs(shared: Path, folder: Path, dates: range) -> dict[str, Any]:
    """eo-learn's Sentinel-2 L1C dates (ten of their 13 bands picked by the job), a nodata strip."""
    scenes = np.load(shared / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((shared / "eolearn_patch/TestEOPatch/timestamps.json").read_text())
    corner = eolearn_corner(shared)
    files = []
    for t in dates:
        data = np.ascontiguousarray(scenes[t].transpose(2, 0, 1)).astype(np.float32)
        data[:, 26:, 30:] = np.nan
        path = folder / f"S2_{stamps[t][:10]}.tif"
        if not path.exists():
            write_described(path, data, corner, descriptions=L1C_BANDS)
        files.append(str(path))
    return {"s2": {"files": files, "bands": [L1C_BANDS.index(b) + 1 for b in S2_BANDS]}}


def eolearn_extent(shared: Path) -> dict[str, Any]:
    left, top = eolearn_corner(shared)
    return {"bounds": [left, top - 320.0, left + 360.0, top], "crs": "EPSG:32633"}


def read_raster(path: str) -> dict[str, Any]:
    with rasterio.open(path) as ds:
        meta = {
            "transform": list(ds.transform)[:6],
            "crs": ds.crs.to_string(),
            "dtype": ds.dtypes[0],
            "nodata": None if ds.nodata is None else str(ds.nodata),
            "tags": ds.tags(),
            "descriptions": list(ds.descriptions),
        }
        return {"data": ds.read(), "meta": meta}


def summary(result: dict, shared: Path) -> dict:
    """The result without machine-dependent keys; paths of the samples relative to their folder."""
    text = json.dumps({k: v for k, v in result.items() if k not in UNSTABLE}, sort_keys=True, default=str)
    for folder in {str(shared), str(shared.resolve())}:
        text = text.replace(folder, "<shared>")
    return json.loads(text)


def cases(shared: Path, folder: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """name -> a function running the case, returning {"result": ..., "rasters": {key: read_raster}}."""
    folder.mkdir(parents=True, exist_ok=True)
    treesat = treesat_inputs(shared, folder)
    series_only = {k: v for k, v in treesat.items() if k != "aerial"}
    common = {"device": "cpu", "threads": 2, "precision": "fp32"}

    def run(name: str, operation: str, params: dict, outputs: tuple[str, ...]) -> dict[str, Any]:
        result = run_operation(operation, params)
        out = {key: read_raster(str(folder / f"{name}-{key}.tif")) for key in outputs}
        return {"result": summary(result, shared), "rasters": out}

    def files(name: str, *keys: str) -> dict[str, str]:
        return {key: str(folder / f"{name}-{key}.tif") for key in keys}

    def classify(name: str, checkpoint: str, modalities: dict, **job) -> Callable[[], dict]:
        keys = ("classes", "confidence", "probabilities")

        def case():
            params = {
                "job": {"model": checkpoint, "modalities": modalities, "outputs": files(name, *keys), **common, **job}
            }
            return run(name, "classify", params, keys)

        return case

    def embed(name: str, model: str, modalities: dict, level: str, **job) -> Callable[[], dict]:
        def case():
            outputs = dict(files(name, "embeddings"), embeddings_level=level)
            params = {"job": {"model": model, "modalities": modalities, "outputs": outputs, **common, **job}}
            return run(name, "embed", params, ("embeddings",))

        return case

    anysat, omnisat = str(MODELS / "anysat-tiny.safetensors"), str(MODELS / "omnisat-small.safetensors")
    table: dict[str, Callable[[], dict]] = {}

    def lazy_head(name: str, kind: str) -> Callable[[], str]:
        return lambda: with_head(name, kind, folder)

    table["classify-anysat-patch"] = lambda: classify(
        "classify-anysat-patch", lazy_head("anysat-tiny.safetensors", "patch")(), treesat, resolution=2
    )()
    table["classify-anysat-dense"] = lambda: classify(
        "classify-anysat-dense", lazy_head("anysat-tiny.safetensors", "dense")(), series_only, patch_size=20
    )()
    for level in ("patch", "local", "both"):
        table[f"embed-anysat-{level}"] = embed(f"embed-anysat-{level}", anysat, treesat, level)
    table["embed-anysat-dense"] = embed("embed-anysat-dense", anysat, series_only, "dense", patch_size=20)
    table["embed-anysat-tile"] = embed("embed-anysat-tile", anysat, treesat, "tile", tile_size=30)
    eolearn = eolearn_inputs(shared, folder, range(5))
    extent = eolearn_extent(shared)
    table["classify-omnisat-eolearn"] = lambda: classify(
        "classify-omnisat-eolearn",
        lazy_head("omnisat-small.safetensors", "patch")(),
        eolearn,
        extent=extent,
        batch_size=8,
        tile_size=120,
        overlap=20,
    )()
    for level in ("patch", "local"):
        table[f"embed-omnisat-eolearn-{level}"] = embed(
            f"embed-omnisat-eolearn-{level}", omnisat, eolearn, level, extent=extent, tile_size=120, overlap=20
        )

    def probe_job(modalities: dict, name: str, *keys: str) -> dict:
        return {
            "model": omnisat,
            "modalities": modalities,
            "outputs": files(name, *keys),
            "extent": extent,
            "tile_size": 120,
            "overlap": 20,
            **common,
        }

    labels = str(shared / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg")

    def fit_and_apply() -> dict[str, Any]:
        probe = str(folder / "probe.safetensors")
        fitted = run_operation(
            "fit-probe",
            {
                "labels": labels,
                "embeddings": str(folder / "embed-omnisat-eolearn-patch-embeddings.tif"),
                "output": probe,
                "class_field": "LULC_NAME",
                "model": omnisat,
                "seed": 0,
                "classes": str(folder / "fit-probe-classes.tif"),
            },
        )
        applied = run_operation(
            "apply-probe",
            {
                "probe": probe,
                "embeddings": probe_job(eolearn, "apply-probe-job", "classes", "confidence", "probabilities"),
            },
        )
        out = {
            key: read_raster(str(folder / f"apply-probe-job-{key}.tif"))
            for key in ("classes", "confidence", "probabilities")
        }
        out["fit-classes"] = read_raster(str(folder / "fit-probe-classes.tif"))
        return {"result": {"fit": summary(fitted, shared), "apply": summary(applied, shared)}, "rasters": out}

    table["fit-and-apply-probe"] = fit_and_apply

    def change() -> dict[str, Any]:
        before = probe_job(eolearn_inputs(shared, folder, range(0, 2)), "change-before", "embeddings")
        after = probe_job(eolearn_inputs(shared, folder, range(3, 5)), "change-after", "embeddings")
        keys = files("change", "magnitude", "change")
        result = run_operation("change", {"before": before, "after": after, **keys})
        return {"result": summary(result, shared), "rasters": {k: read_raster(v) for k, v in keys.items()}}

    table["change-omnisat-eolearn"] = change
    return table


def record(target: Path, shared: Path, work: Path) -> None:
    """Run every case and write its rasters (npz) and summaries (JSON) under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, case in cases(shared, work).items():
        out = case()
        np.savez_compressed(target / f"{name}.npz", **{k: r["data"] for k, r in out["rasters"].items()})
        manifest[name] = {"result": out["result"], "rasters": {k: r["meta"] for k, r in out["rasters"].items()}}
        print(name, {k: r["data"].shape for k, r in out["rasters"].items()}, flush=True)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="golden-") as work:
        record(Path(sys.argv[1]), ROOT.parent / "shared" / "data", Path(work))
