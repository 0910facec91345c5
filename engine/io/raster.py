"""Opening rasters with messages a person can act on."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from engine.errors import DamagedInput, EngineError
from engine.io.gdal_errors import gdal_failures


def valid_mask(dataset, data: np.ndarray) -> np.ndarray:
    """True where a pixel holds data: not the band's nodata value and not NaN."""
    mask = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, bool)
    if dataset.nodata is not None:
        nodata = dataset.nodata
        mask &= ~(np.isnan(data) if isinstance(nodata, float) and math.isnan(nodata) else data == nodata)
    return mask


def gdal_name(path: str | os.PathLike) -> str:
    """A path as GDAL reads it: a virtual file system name (``/vsicurl/https://...``) keeps its URL
    whole even after pathlib folded its ``//`` (every input passes through Path)."""
    return re.sub(r"^(/vsicurl(?:_streaming)?/)(https?|ftp):/(?!/)", r"\1\2://", str(path))


def open_raster(path: str | os.PathLike, setting: str = "input"):
    """Open a raster for reading; every failure becomes an EngineError naming the file."""
    if str(path).startswith("/vsi"):  # GDAL's virtual file systems: object storage, HTTP, archives
        return _open_gdal_name(gdal_name(path), setting)
    prefix = str(path).split(":", 1)[0]
    if ":" in str(path) and len(prefix) > 1 and prefix.isupper():
        return _open_gdal_name(str(path), setting)  # a GDAL subdataset name, e.g. HDF5:"f.h5"://x
    file = Path(path).expanduser()
    if not str(path):
        raise EngineError(f"No {setting} raster was given: choose a raster file.")
    if not file.exists():
        raise EngineError(f"The {setting} raster '{file}' does not exist: check the path.")
    if file.is_dir() and not any(file.iterdir()):
        raise EngineError(f"The {setting} '{file}' is an empty folder, not a raster.")
    if file.is_file() and file.stat().st_size == 0:
        raise EngineError(
            f"The {setting} raster '{file}' is empty (0 bytes): the file is damaged or was not fully copied."
        )
    try:
        dataset = rasterio.open(file)
    except RasterioIOError as exc:
        raise EngineError(
            f"The {setting} '{file}' is not a raster GDAL can read ({_gdal_reason(exc)}). "
            "Choose a GeoTIFF or another GDAL raster format."
        ) from None
    if dataset.count == 0:
        subdatasets = list(dataset.subdatasets)
        dataset.close()
        if subdatasets:
            listed = ", ".join(subdatasets[:3]) + (", ..." if len(subdatasets) > 3 else "")
            raise EngineError(
                f"The {setting} '{file}' has no bands of its own: it is a container of "
                f"{len(subdatasets)} subdatasets ({listed}). Give one subdataset instead."
            )
        raise EngineError(f"The {setting} raster '{file}' has no bands: it holds no data to process.")
    return dataset


def _open_gdal_name(name: str, setting: str):
    # A remote file: no listing of its "folder" for sidecar files (a request per file and rank at
    # country scale), unless the user's GDAL setting says otherwise.
    remote = name.startswith("/vsi") and "GDAL_DISABLE_READDIR_ON_OPEN" not in os.environ
    try:
        with rasterio.Env(**({"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"} if remote else {})):
            dataset = rasterio.open(name)
    except RasterioIOError as exc:
        raise EngineError(f"The {setting} '{name}' could not be opened ({_gdal_reason(exc)}).") from None
    if dataset.count == 0:
        dataset.close()
        raise EngineError(f"The {setting} '{name}' has no bands: it holds no data to process.")
    return dataset


def check_band(dataset, band: int, setting: str) -> None:
    if not 1 <= band <= dataset.count:
        raise EngineError(
            f"The {setting} is band {band}, but '{dataset.name}' has bands 1 to {dataset.count}: "
            "choose an existing band."
        )


def _gdal_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def damaged_raster_error(name: str, exc: Exception) -> EngineError:
    """The message for a raster whose header opened but whose data does not read (truncated, damaged)."""
    return EngineError(
        f"'{name}' could not be read ({_gdal_reason(exc)}): the file is damaged or incomplete "
        "(truncated copy or download). Replace it and run again."
    )


@contextlib.contextmanager
def damaged_rasters(inputs: list[str]) -> Iterator[None]:
    """Turn a read failure anywhere in an operation into the damaged-file message naming the raster
    (rasterio's exception names it; a failure only GDAL's handler saw is one of ``inputs``)."""
    with gdal_failures() as failures:
        try:
            yield
            if failures:
                raise DamagedInput(failures[0])
        except RasterioIOError as exc:
            named = re.search(r"failed\. (.+?), band \d+", str(exc))
            raise damaged_raster_error(named.group(1) if named else "An input raster", exc) from None
        except DamagedInput as exc:
            names = " or ".join(f"'{p}'" for p in dict.fromkeys(inputs)) or "an input raster"
            raise EngineError(
                f"GDAL could not read {names} whole ({exc}): the file is damaged or incomplete (truncated "
                "copy or download). Replace it and run again; nothing was written."
            ) from None
