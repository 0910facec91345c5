"""The job format of ``classify``, ``embed`` and ``normalization-stats``.

One JSON object, identical for the command line (``python -m engine classify
JOB.json``), the worker (``{"operation": "classify", "params": {"job": <the object
or a path to it>}}``) and the QGIS Processing algorithms, which map their
parameters one to one onto these keys::

    {
      "version": 1,                              optional; this format is version 1
      "model": "model.safetensors",              required: checkpoint file (engine.models.checkpoint),
                                                 or a catalog name ("anysat-tiny"; python -m engine models)
      "modalities": {                            required: one entry per model modality used,
        "s2": {                                  keyed by the model's modality name (any subset)
          "files": "S2_stack.tif",               required (or "parts"): one file, a list of files, or
                                                 a folder (its .tif/.tiff/.jp2/.vrt/.img/.nc files)
                                                 or a GDAL subdataset (NETCDF:"f.nc":B02);
                                                 series: one file per date, or one file whose
                                                 bands are dates x channels (band t*C+c+1), dates
                                                 also from a netCDF time coordinate
          "parts": [                             instead of "files": the bands in several files, e.g.
            {"files": "S2_10m/",                 Sentinel-2 L2A's 10 m and 20 m bands; each part: its
             "bands": ["B2", "B3", "B4", "B8"],  files (as "files") and the model's bands they hold,
             "dates": [...]},                    in the files' band order (optional "dates"); the
            {"files": "S2_20m/", "bands": [...]} parts must have the same dates and nesting grids;
          ],                                     coarser bands are resampled (bilinear) while reading
          "season": ["2018-03-01", "2018-10-31"],
                                                 optional: only the dates in this range (inclusive);
                                                 overrides the job's "season"
          "dates": ["2020-06-15", ...],          optional: one per date, overrides dates read from
                                                 names (YYYYMMDD, YYYY-MM-DD, Sentinel-1/2 and
                                                 Landsat product names), GDAL metadata
                                                 (ACQUISITIONDATE, TIFFTAG_DATETIME, ...) or
                                                 band descriptions; order = the files' order
          "bands": [2, 3, 4, 5, 6, 7, 8, 9, 12, 13],
                                                 optional: band numbers (1-based) of each file, one
                                                 per model band, in the model's order; null for a
                                                 band the files lack (AnySat fills it with its
                                                 learned padding value and logs it)
          "scale": "reflectance_to_dn",          optional: convert the values while reading (the
                                                 files are never rewritten) to the scale the
                                                 model's normalization expects: dn_to_reflectance,
                                                 reflectance_to_dn, linear_to_db, db_to_linear
          "mask": {                              optional: per-date cloud / validity masks
            "files": [...] | "folder" | "file",  one single-band layer per date (matched by date
                                                 when the mask names carry dates, else by position)
                                                 or one file with one band per date
            "type": "binary",                    binary (non-zero = cloud), valid (non-zero = clear),
                                                 scl (Sentinel-2 scene classification), probability
            "threshold": 50,                     probability above which a pixel is cloudy
            "classes": [0, 1, 3, 8, 9, 10]       scl: the classes masked (default: no data, defective,
                                                 shadow, cloud medium/high, cirrus; add 11 for snow)
          }
        },
        "s1": {"files": ["S1_20200614.tif", "S1_20200626.tif"]}
      },
      "outputs": {                               required: at least one file
        "classes": "classes.tif",                uint8 class map, colour table, class names (classify)
        "confidence": "confidence.tif",          float32 probability of the chosen class (classify)
        "probabilities": "probabilities.tif",    float32, one band per class (classify)
        "embeddings": "embeddings.tif",          one band per embedding dimension, one pixel per patch
                                                 (per sub-patch / window at the dense / tile level)
        "embeddings_dtype": "float32",           float32 or float16
        "embeddings_level": "patch"              patch (fused, default), local (per-patch encoder
                                                 tokens before fusion: they follow each patch's
                                                 own pixels), both ([patch, local] concatenated),
                                                 dense (AnySat: [patch, sub-patch token] per
                                                 sub-patch of the finest modality, written on the
                                                 sub-patch grid) or tile (one vector per window,
                                                 written on a grid of window-sized cells; windows
                                                 laid edge to edge, no overlap); also the level a
                                                 probe applied with this job reads
      },
      "season": ["2018-03-01", "2018-10-31"],    optional: the dates of every series to use (inclusive)
      "extent": {"bounds": [xmin, ymin, xmax, ymax], "crs": "EPSG:4326"},
                                                 optional: area to map, in any CRS (default: the
                                                 grid CRS); default: where all inputs overlap
      "crs": "EPSG:32633",                       optional: grid CRS (default: the finest input's;
                                                 a local UTM zone when that one is geographic)
      "resolution": 10,                          optional: output pixel size in metres (default: the
                                                 finest modality's); must divide the patch size
      "patch_size": 10,                          optional: model patch size in metres (default: model's)
      "tile_size": 640,                          optional: window size in metres (default: the patch
                                                 grid the model was trained on, e.g. 6 x 10 m)
      "overlap": 80,                             optional: window overlap in metres (default: 1/6 of
                                                 the tile, rounded down to patches)
      "batch_size": 4,                           windows per model call
      "device": "auto",                          auto (CUDA when available), cpu or cuda
      "precision": "auto",                       auto, fp32 or bf16 (engine.runtime.precision)
      "threads": 2,                              optional: torch CPU threads (per rank)
      "ranks": 1,                                processes that share the grid on this machine
                                                 (engine.mapping.ranks); under torchrun its
                                                 world size counts instead. An output named
                                                 .vrt is a VRT over the ranks' parts, any
                                                 other a Cloud-Optimized GeoTIFF; a rerun
                                                 keeps the shards a failed run finished
      "normalization": "stats.json",             optional: per-band statistics overriding the
                                                 checkpoint's (file or inline object, see
                                                 engine.io.normalize)
      "min_valid_fraction": 0.5                  a date takes part in a window when at least this
                                                 share of its pixels is valid (else date_mask=False)
    }

Relative paths are relative to the job file's folder (to the working directory
for an inline job). Sizes in metres are rounded to whole patches. Unknown keys are
an error (a typo must not be ignored silently).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.contract import DEVICES, PRECISIONS
from engine.convert import Wording, convert, from_dict
from engine.errors import EngineError
from engine.io.scales import CONVERSIONS
from engine.mapping.levels import LEVEL_NAMES
from engine.models.catalog import find_model

JOB_VERSION = 1
# A small job that parses as it stands (tests/engine/test_cli_help.py): what ``--help`` shows.
EXAMPLE_JOB: dict[str, Any] = {
    "model": "anysat-tiny",
    "modalities": {
        "s2": {"files": ["S2_20200615.tif", "S2_20200710.tif", "S2_20200804.tif"]},
        "s1_asc": {"files": "s1_folder", "dates": ["2020-06-14", "2020-07-08", "2020-08-01"]},
    },
    "extent": {"bounds": [499980, 5090220, 501980, 5092220], "crs": "EPSG:32632"},
    "outputs": {"classes": "classes.tif", "confidence": "confidence.tif", "embeddings_level": "patch"},
    "device": "auto",
}
EMBEDDING_DTYPES = ("float32", "float16")
CLASS_OUTPUTS = ("classes", "confidence", "probabilities")
POSITIVE = {"positive": True}

# The job's keys in the words of its messages (engine.convert reads the settings and the outputs).
JOB_WORDING = Wording(
    label="{where}: {key!r}",
    unknown="{where} has unknown key(s) {keys}; known: {allowed}.",
    missing="{where} lacks {keys}.",
    not_mapping="{where} must be a JSON object.",
    nested="{where}: {key!r}",
)


@dataclass(frozen=True)
class MaskEntry:
    files: str | list[str]
    type: str = "binary"
    threshold: float = 50.0
    classes: tuple[int, ...] | None = None  # scl: the classes masked (None: engine.io.series.SCL_INVALID)


@dataclass(frozen=True)
class PartEntry:
    files: str | list[str]
    bands: tuple[str, ...]  # the model's bands the files hold, in their band order
    dates: list[str] | None = None


@dataclass(frozen=True)
class ModalityEntry:
    files: str | list[str] | None  # None: the bands come in "parts"
    dates: list[str] | None = None
    bands: list[int | None] | None = None  # None inside: a band the files lack
    mask: MaskEntry | None = None
    scale: str | None = None  # a key of engine.io.scales.CONVERSIONS
    parts: tuple[PartEntry, ...] | None = None
    season: tuple[str, str] | None = None
    # a sensor the model's table lacks, for models that read bands by wavelength (UniverSat):
    # {"wavelengths": [µm or "VV"...], "resolution": m, "series": bool, "sub_patch": px}
    sensor: dict | None = None


@dataclass(frozen=True)
class Outputs:
    classes: str | None = None
    confidence: str | None = None
    probabilities: str | None = None
    embeddings: str | None = None
    embeddings_dtype: str = field(default="float32", metadata={"choices": EMBEDDING_DTYPES})
    embeddings_level: str = field(default="patch", metadata={"choices": LEVEL_NAMES})

    def files(self) -> dict[str, str]:
        return {k: v for k in (*CLASS_OUTPUTS, "embeddings") if (v := getattr(self, k))}


@dataclass(frozen=True)
class Job:
    model: str
    modalities: dict[str, ModalityEntry]
    outputs: Outputs
    extent: tuple[tuple[float, float, float, float], str | None] | None = None
    crs: str | None = None
    resolution: float | None = field(default=None, metadata=POSITIVE)
    patch_size: float | None = field(default=None, metadata=POSITIVE)
    tile_size: float | None = field(default=None, metadata=POSITIVE)
    overlap: float | None = field(default=None, metadata={"minimum": 0})
    batch_size: int = field(default=4, metadata=POSITIVE)
    device: str = field(default="auto", metadata={"choices": DEVICES})
    precision: str = field(default="auto", metadata={"choices": PRECISIONS})
    threads: int | None = field(default=None, metadata=POSITIVE)
    ranks: int = field(default=1, metadata=POSITIVE)
    normalization: str | dict | None = None
    min_valid_fraction: float = 0.5
    season: tuple[str, str] | None = None
    version: int = JOB_VERSION
    source: str = field(default="<inline job>", compare=False)


def _keys(obj: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise EngineError(f"{where} must be a JSON object.")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise EngineError(f"{where} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}.")
    missing = sorted(required - set(obj))
    if missing:
        raise EngineError(f"{where} lacks {', '.join(repr(m) for m in missing)}.")
    return obj


def _paths(value: Any, base: Path, where: str) -> str | list[str]:
    def resolve(p: Any) -> str:
        if not isinstance(p, str) or not p:
            raise EngineError(f"{where} must name files as non-empty strings, got {p!r}.")
        if re.match(r"^[A-Z][A-Z0-9_]+:", p) or p.startswith("/vsi"):
            return p  # a GDAL subdataset (NETCDF:"f.nc":B02) or virtual file: as written
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else base / path)

    if isinstance(value, list):
        return [resolve(v) for v in value]
    return resolve(value)


def _modality(name: str, obj: Any, base: Path) -> ModalityEntry:
    where = f'Modality "{name}" of the job'
    _keys(obj, where, {"files", "dates", "bands", "mask", "scale", "sensor", "parts", "season"})
    if (obj.get("files") is None) == (obj.get("parts") is None):  # a key given as null counts as absent
        raise EngineError(
            f'{where} needs either "files" or "parts" (the bands in several files), not '
            f'{"both" if obj.get("files") is not None else "neither"}.'
        )
    parts = None
    if obj.get("parts") is not None:
        if obj.get("bands") is not None or obj.get("dates") is not None:  # null counts as absent (a saved job)
            raise EngineError(f'{where}: with "parts", give "bands" and "dates" inside each part.')
        if not isinstance(obj["parts"], list) or not obj["parts"]:
            raise EngineError(f'{where}: "parts" must be a list of {{"files": ..., "bands": [band names]}}.')
        parts = tuple(_part(part, base, f"{where}, part {k + 1}") for k, part in enumerate(obj["parts"]))
    dates = obj.get("dates")
    if dates is not None and (not isinstance(dates, list) or not all(isinstance(d, str) for d in dates)):
        raise EngineError(f'{where}: "dates" must be a list of dates written as "YYYY-MM-DD".')
    bands = obj.get("bands")
    if bands is not None and (
        not isinstance(bands, list)
        or not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bands)
    ):
        raise EngineError(f'{where}: "bands" must be a list of band numbers (1-based), null for a missing band.')
    mask = None
    if obj.get("mask") is not None:
        m = _keys(obj["mask"], f"{where}, mask", {"files", "type", "threshold", "classes"}, {"files"})
        classes = m.get("classes")
        if classes is not None and (
            not isinstance(classes, list)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 11 for c in classes)
        ):
            raise EngineError(
                f'{where}, mask: "classes" must list Sentinel-2 scene classes (integers 0-11), '
                "e.g. [0, 1, 3, 8, 9, 10, 11]."
            )
        if classes is not None and m.get("type") != "scl":
            raise EngineError(f'{where}, mask: "classes" applies to "type": "scl" only.')
        mask = MaskEntry(
            _paths(m["files"], base, f"{where}, mask"),
            str(m.get("type", "binary")),
            convert(m.get("threshold", 50.0), float, f"{where}, mask: 'threshold'"),
            None if classes is None else tuple(classes),
        )
    scale = obj.get("scale")
    if scale is not None and scale not in CONVERSIONS:
        raise EngineError(
            f'{where}: "scale" is {scale!r}; known: {", ".join(CONVERSIONS)} '
            "(or leave it out when the files are on the model's scale)."
        )
    sensor = obj.get("sensor")
    if sensor is not None:
        _keys(
            sensor,
            f"{where}, sensor",
            {"wavelengths", "resolution", "series", "sub_patch"},
            {"wavelengths", "resolution"},
        )
    season = _season(obj.get("season"), where)
    files = _paths(obj["files"], base, where) if obj.get("files") is not None else None
    return ModalityEntry(files, dates, bands, mask, scale, parts, season, sensor)


def _part(obj: Any, base: Path, where: str) -> PartEntry:
    _keys(obj, where, {"files", "bands", "dates"}, {"files", "bands"})
    bands, dates = obj["bands"], obj.get("dates")
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        raise EngineError(
            f'{where}: "bands" must list the model\'s band names the files hold, in their order, '
            'e.g. ["B5", "B6", "B7", "B8A", "B11", "B12"].'
        )
    if dates is not None and (not isinstance(dates, list) or not all(isinstance(d, str) for d in dates)):
        raise EngineError(f'{where}: "dates" must be a list of dates written as "YYYY-MM-DD".')
    return PartEntry(_paths(obj["files"], base, where), tuple(bands), dates)


def _season(value: Any, where: str) -> tuple[str, str] | None:
    if value is None:
        return None
    from engine.io.series import parse_season  # lazy: keeps rasterio (engine.io.series reads rasters) out of --help

    parse_season(value, where)  # checked now: a typo fails before any file is read
    return str(value[0]), str(value[1])


def _outputs(obj: Any, base: Path, where: str) -> Outputs:
    outputs = from_dict(Outputs, obj, f'{where}: "outputs"', JOB_WORDING)
    # An empty name is no file; the others relative to the job's folder.
    outputs = replace(
        outputs,
        **{
            k: _paths(v, base, f'"outputs.{k}"') if v else None
            for k in (*CLASS_OUTPUTS, "embeddings")
            if (v := getattr(outputs, k)) is not None
        },
    )
    if not outputs.files():
        raise EngineError(f'{where}: "outputs" names no file: give at least "classes" or "embeddings".')
    return outputs


def _extent(obj: Any, where: str) -> tuple[tuple[float, ...], str | None]:
    e = _keys(obj, f'{where}: "extent"', {"bounds", "crs"}, {"bounds"})
    b = e["bounds"]
    if not (
        isinstance(b, list)
        and len(b) == 4
        and all(isinstance(v, (int, float)) for v in b)
        and b[0] < b[2]
        and b[1] < b[3]
    ):
        raise EngineError(
            f'{where}: "extent.bounds" must be [xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax.'
        )
    return tuple(float(v) for v in b), e.get("crs")


def _model(value: Any, base: Path, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise EngineError(f'{where}: "model" must name a checkpoint file or a model of the catalog.')
    path = Path(value).expanduser()
    if not path.is_absolute() and (base / path).exists():
        return str(base / path)
    if not path.exists() and path.suffix != ".safetensors" and len(path.parts) == 1:
        # a catalog name ("anysat-tiny", a model fetch-model converted)

        return str(find_model(value).path)
    return value


def parse_job(obj: Any, base: Path | None = None, source: str = "<inline job>") -> Job:
    """A Job from a decoded JSON object, with one clear error per mistake: the keys and settings
    through the engine's converter (engine.convert), files relative to ``base``."""
    where = f"The job {source}"
    base = base or Path.cwd()
    values = dict(_keys(obj, where, {f.name for f in fields(Job)} - {"source"}, {"model", "modalities", "outputs"}))
    if values.get("version", JOB_VERSION) != JOB_VERSION:
        raise EngineError(f"{where} is version {values['version']}; this engine reads version {JOB_VERSION}.")
    modalities = _keys(
        values["modalities"],
        f'{where}: "modalities"',
        set(values["modalities"]) if isinstance(values["modalities"], dict) else set(),
    )
    if not modalities:
        raise EngineError(f'{where}: "modalities" is empty: give at least one modality with its files.')
    values.update(
        model=_model(values["model"], base, where),
        modalities={name: _modality(name, entry, base) for name, entry in modalities.items()},
        outputs=_outputs(values["outputs"], base, where),
    )
    if values.get("extent") is not None:
        values["extent"] = _extent(values["extent"], where)
    if values.get("season") is not None:
        values["season"] = _season(values["season"], where)
    if isinstance(values.get("normalization"), str):
        values["normalization"] = _paths(values["normalization"], base, '"normalization"')
    job = from_dict(Job, values, where, JOB_WORDING, source=source)
    if not 0 <= job.min_valid_fraction <= 1:
        raise EngineError(f'{where}: "min_valid_fraction" must lie between 0 and 1, got {job.min_valid_fraction}.')
    return job


def load_job(job: str | dict | os.PathLike | Job) -> Job:
    """A Job from a file path, a JSON string, an already decoded object or a Job already read."""
    if isinstance(job, Job):
        return job
    if isinstance(job, dict):
        return parse_job(job)
    text = str(job).strip()
    if text.startswith("{"):
        try:
            return parse_job(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EngineError(f"The job is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    path = Path(text).expanduser()
    if not path.is_file():
        raise EngineError(f"The job file '{path}' does not exist: give the path of a job JSON file.")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineError(f"The job file '{path}' is not valid JSON ({exc}).") from None
    return parse_job(obj, base=path.resolve().parent, source=f"'{path}'")


def is_job(value: str | dict | os.PathLike | Job) -> bool:
    """Whether a parameter that takes a job or a raster holds a job (an object, JSON text, a .json file or a Job)."""
    return isinstance(value, (dict, Job)) or str(value).strip().startswith("{") or str(value).lower().endswith(".json")
