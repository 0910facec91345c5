"""The part files of a sharded run, their manifests, and their assembly into the job's outputs.

Each shard (engine.mapping.shards) writes every output of the job as a part, a tiled
GeoTIFF of its rows, in a folder beside the output (``classes.tif.parts/part-001-of-004.tif``),
under a temporary name renamed when complete. Then it writes its manifest (in the parts
folder of the job's first output): each part's size and SHA-256 and a fingerprint of
what made it (the job, the engine, the model's and inputs' sizes and times, the shard).
A rerun of the same job skips every shard whose manifest matches and whose parts read
back with that size and digest, so a crashed rank costs its own shard only.

Rank 0 assembles: a ``.vrt`` output is a VRT over the parts (which stay, beside it);
any other name becomes one Cloud-Optimized GeoTIFF (GDAL's COG driver) made from that
VRT, after which the parts are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import xml.etree.ElementTree as ET  # nosec B405  # only builds XML, parses none
from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil

import engine
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.io.grid import Grid
from engine.io.job import Job
from engine.mapping.plan import Plan
from engine.mapping.shards import Shard

GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}
COG_OPTIONS = {"COMPRESS": "DEFLATE", "BIGTIFF": "IF_SAFER", "BLOCKSIZE": "256"}


def parts_folder(output: str | os.PathLike) -> Path:
    path = Path(output)
    return path.with_name(path.name + ".parts")


def part_path(output: str | os.PathLike, shard: Shard) -> Path:
    return parts_folder(output) / f"{shard.name}.tif"


def manifest_path(plan: Plan, shard: Shard) -> Path:
    return parts_folder(next(iter(plan.outputs.files.values()))) / f"{shard.name}.json"


def _stat(path: str) -> list:
    """Size and modification time, or the bare name for what has none here (a /vsicurl/ input)."""
    try:
        st = os.stat(path)
    except OSError:
        return [path]
    return [path, st.st_size, st.st_mtime_ns]


def fingerprint(job: Job, plan: Plan, shard: Shard) -> str:
    """What a shard's parts depend on: a different job, engine, model, input or shard layout
    makes its parts stale."""
    settings = {k: v for k, v in dataclasses.asdict(job).items() if k not in ("ranks", "threads", "source")}
    files = sorted({str(p) for m in plan.modalities.values() for p in m.files} | {job.model})
    if isinstance(job.normalization, str):
        files.append(job.normalization)
    identity = {
        "engine": engine.__version__,
        "job": settings,
        "files": [_stat(f) for f in files],
        "shard": [shard.index, shard.count, *shard.window_rows, *shard.rows],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(plan: Plan, shard: Shard, stamp: str, result: dict[str, Any]) -> None:
    """After every part of ``shard`` is renamed into place: their sizes and digests."""
    parts = {}
    for key, output in plan.outputs.files.items():
        path = part_path(output, shard)
        parts[key] = {"file": path.name, "size": path.stat().st_size, "sha256": _digest(path)}
    kept = {k: result[k] for k in ("coverage", "windows_computed", "windows_without_data", "model_seconds", "seconds")}
    with atomic_output(manifest_path(plan, shard), "shard manifest") as temp:
        temp.write_text(json.dumps({"fingerprint": stamp, "parts": parts, "result": kept}, indent=1))


def finished(plan: Plan, shard: Shard, stamp: str) -> dict[str, Any] | None:
    """A shard's recorded result when its manifest matches ``stamp`` and every part reads back
    whole (size and SHA-256); None when it must be computed (again)."""
    try:
        manifest = json.loads(manifest_path(plan, shard).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != stamp or set(manifest.get("parts", {})) != set(plan.outputs.files):
        return None
    for key, output in plan.outputs.files.items():
        path, recorded = part_path(output, shard), manifest["parts"][key]
        if not path.is_file() or path.stat().st_size != recorded["size"] or _digest(path) != recorded["sha256"]:
            return None
    return manifest["result"]


def _metadata(parent: ET.Element, tags: dict[str, str]) -> None:
    if tags:
        node = ET.SubElement(parent, "Metadata")
        for key, value in tags.items():
            ET.SubElement(node, "MDI", key=key).text = value


def vrt_xml(grid: Grid, sources: list[tuple[str, int, int]], template) -> str:
    """A VRT on ``grid`` stacking ``sources`` (file relative to the VRT, first row, rows) top to
    bottom, with the bands, nodata, descriptions, colour table and tags of ``template``
    (an open dataset: the first part)."""
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = grid.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in grid.transform.to_gdal())
    _metadata(root, template.tags())
    for band in range(1, template.count + 1):
        node = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[template.dtypes[band - 1]], band=str(band))
        if template.nodata is not None:
            ET.SubElement(node, "NoDataValue").text = repr(float(template.nodata))
        if template.descriptions[band - 1]:
            ET.SubElement(node, "Description").text = template.descriptions[band - 1]
        _metadata(node, template.tags(band))
        try:
            colors = template.colormap(band)
        except ValueError:  # no colour table
            colors = None
        if colors:
            ET.SubElement(node, "ColorInterp").text = "Palette"
            table = ET.SubElement(node, "ColorTable")
            for index in range(max(colors) + 1):
                r, g, b, a = colors.get(index, (0, 0, 0, 0))
                ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
        for name, row, rows in sources:
            source = ET.SubElement(node, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = name
            ET.SubElement(source, "SourceBand").text = str(band)
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(grid.width), ySize=str(rows))
            ET.SubElement(source, "DstRect", xOff="0", yOff=str(row), xSize=str(grid.width), ySize=str(rows))
    return ET.tostring(root, encoding="unicode")


def assemble(output: str, key: str, grid: Grid, shards: list[Shard], part_grids: list[Grid]) -> None:
    """One output from its parts: a VRT (``.vrt``) or a Cloud-Optimized GeoTIFF (any other name)."""
    out, folder = Path(output), parts_folder(output)
    top = grid.transform.f
    rows = [(round((top - g.transform.f) / grid.res), g.height) for g in part_grids]
    beside = out.suffix.lower() == ".vrt"  # the VRT names its parts from beside them, the mosaic from inside
    sources = [
        ((f"{folder.name}/" if beside else "") + part_path(output, s).name, row, n) for s, (row, n) in zip(shards, rows)
    ]
    with rasterio.open(part_path(output, shards[0])) as template:
        xml = vrt_xml(grid, sources, template)
        predictor = "3" if template.dtypes[0].startswith("float") else "2"
    if beside:
        with atomic_output(out, f"{key} output") as temp:
            temp.write_text(xml)
            with rasterio.open(temp) as ds:  # reads back: every part is where the VRT says
                ds.read(1, window=((ds.height - 1, ds.height), (0, ds.width)))
        return
    mosaic = folder / "mosaic.vrt"
    mosaic.write_text(xml)
    with atomic_output(out, f"{key} output") as temp:
        rasterio.shutil.copy(mosaic, temp, driver="COG", PREDICTOR=predictor, **COG_OPTIONS)
    mosaic.unlink()


def remove_parts(outputs: dict[str, str], keep_vrt_parts: bool = True) -> None:
    """The parts folders of ``outputs``; those a VRT output reads stay unless ``keep_vrt_parts`` is False."""
    for output in outputs.values():
        if not (keep_vrt_parts and Path(output).suffix.lower() == ".vrt"):
            shutil.rmtree(parts_folder(output), ignore_errors=True)


def remove_stale_parts(outputs: dict[str, str], shards: list[Shard]) -> None:
    """Parts and manifests of another shard layout (an earlier run with other ranks) beside a VRT output."""
    current = {s.name for s in shards}
    for output in outputs.values():
        folder = parts_folder(output)
        for path in folder.glob("part-*-of-*.*") if folder.is_dir() else ():
            if path.stem not in current and path.suffix in (".tif", ".json"):
                path.unlink()


def missing_shard(shard: Shard, folder: Path) -> EngineError:
    return EngineError(
        f"Shard {shard.index + 1} of {shard.count} has no complete part in '{folder}': "
        "its rank failed or another run changed it. Run the job again: finished shards are kept."
    )
