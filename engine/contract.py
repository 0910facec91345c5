"""The contract between the engine and the QGIS plugin: one module, standard library only, that both use.

The plugin ships the engine inside its folder and loads this one file by its path
(omnisat_qgis/contract.py): QGIS's process never imports the rest of the engine (no torch,
rasterio or numpy). Whatever the two sides must agree on lives here once: the worker protocol's
version, the identifiers written into probe and checkpoint files, a job's device and precision
choices, how a safetensors header is read without its tensors, a file's sha256, and how an
acquisition date is read from a name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
from pathlib import Path

PROTOCOL_VERSION = 1  # of the worker's JSON lines (engine.runtime.protocol)
PROBE_FORMAT = "omnisat-probe"  # "format" in a probe file's header (engine.probes.probe_file)
CHECKPOINT_FORMAT = "omnisat-qgis-checkpoint"  # "format" in a checkpoint's header (engine.models.checkpoint)
# A safetensors header larger than this is not a checkpoint's or a probe's (guards against reading a huge file).
MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 1 << 20  # bytes hashed at a time
# A job's "device" and "precision" values: the plugin's forms offer them, the job parser and
# engine.runtime.precision accept them.
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


class ContractError(ValueError):
    """A file or a value does not follow the contract; the message names it and the fix."""


def sha256_of(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file, read from its header without the tensors."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            if size > MAX_HEADER_BYTES:
                raise ContractError(f"'{path}' is not a safetensors checkpoint (header of {size} bytes).")
            header = json.loads(handle.read(size))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ContractError):
            raise
        raise ContractError(
            f"'{path}' is not a readable safetensors checkpoint ({exc}): choose another file."
        ) from None
    return header.get("__metadata__") or {}


# ---------------------------------------------------------------- acquisition dates (engine.io.dates)

# Years outside this range are much more likely to be another number (an orbit, a
# tile id) than an Earth-observation acquisition date.
MIN_YEAR, MAX_YEAR = 1970, 2099

_Y = r"(?P<y>(?:19|20)\d\d)"
_M = r"(?P<m>0[1-9]|1[0-2])"
_D = r"(?P<d>0[1-9]|[12]\d|3[01])"

# Product names whose FIRST date is the acquisition date (later ones are processing dates).
_PRODUCT = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:S1[ABCD]_\w*?|S2[ABCD]_MSI\w*?|L[COTEM]0\d_\w*?|T\d\d[A-Z]{3}_)" + _Y + _M + _D,
    re.IGNORECASE,
)
_COMPACT_DATETIME = re.compile(r"(?<!\d)" + _Y + _M + _D + r"T\d{6}(?!\d)")
_SEPARATED = re.compile(r"(?<!\d)" + _Y + r"(?P<sep>[-_.])" + _M + r"(?P=sep)" + _D + r"(?!\d)")
_COMPACT = re.compile(r"(?<!\d)" + _Y + _M + _D + r"(?!\d)")
# GDAL/TIFF metadata: "2020:01:02 10:34:21" (TIFFTAG_DATETIME) or ISO 8601.
_METADATA = re.compile(_Y + r"[-:/]?" + _M + r"[-:/]?" + _D)

# Metadata keys tried in this order (dataset tags, then band tags).
DATE_TAGS = (
    "ACQUISITIONDATE",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "DATE",
    "TIFFTAG_DATETIME",
)


def _make(match: re.Match) -> dt.date | None:
    try:
        date = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:  # e.g. 2021-02-30
        return None
    return date if MIN_YEAR <= date.year <= MAX_YEAR else None


def date_from_name(name: str) -> dt.date | None:
    """The acquisition date written in a file name or band description, or None."""
    for pattern in (_PRODUCT, _COMPACT_DATETIME):
        for match in pattern.finditer(name):
            date = _make(match)
            if date is not None:
                return date
    found = {d for p in (_SEPARATED, _COMPACT) for m in p.finditer(name) if (d := _make(m))}
    return found.pop() if len(found) == 1 else None


def parse_date(text: str | dt.date) -> dt.date:
    """One date given by a person: ISO ``YYYY-MM-DD`` (time allowed), ``YYYYMMDD`` or a product name."""
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    value = str(text).strip()
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    date = date_from_name(value)
    if date is None:
        raise ContractError(f"'{text}' is not a date: write it as YYYY-MM-DD (e.g. 2020-06-15).")
    return date


def date_from_tags(tags: dict[str, str]) -> dt.date | None:
    """The acquisition date in GDAL metadata (ACQUISITIONDATE, TIFFTAG_DATETIME, ...), or None."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in DATE_TAGS:
        if key in upper and (match := _METADATA.search(str(upper[key]))):
            if (date := _make(match)) is not None:
                return date
    return None
