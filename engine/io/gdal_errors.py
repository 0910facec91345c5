"""The failures GDAL reports while an operation runs, which rasterio does not always raise.

A failed block write (full disk) and a failed decode (a truncated JPEG 2000 or compressed
GeoTIFF) reach only GDAL's error handler: the file is renamed, or the statistics computed,
from whatever the buffer held. While an operation runs (engine.runtime.registry.run_operation) or an
output is written (engine.io.atomic), one process-wide handler collects them, from every
thread (read-ahead threads, GDAL's own decoding threads); atomic outputs refuse to replace
anything once a failure was reported, and the operation fails with the damaged-file message.
GDAL's messages are still printed on stderr, as its own handler would.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_active: list[str] | None = None  # the failures of the operation running now, when one is


@contextlib.contextmanager
def gdal_failures() -> Iterator[list[str]]:
    """The list GDAL's failures are appended to while the block runs (an enclosing block's, if any)."""
    global _active
    with _lock:
        outer = _active
        if outer is None:
            _active = []
        failures = _active
    if outer is not None:
        yield failures
        return
    gdal = _gdal()
    if gdal is not None:
        gdal.SetErrorHandler(_handler(gdal, failures))
    try:
        yield failures
    finally:
        if gdal is not None:
            gdal.SetErrorHandler("CPLDefaultErrorHandler")
        with _lock:
            _active = None


def _gdal():
    try:
        from osgeo import gdal  # lazy: keeps GDAL out of this module
    except ImportError:  # rasterio's own GDAL only: the read-back check of atomic outputs still runs
        return None
    return gdal


def _handler(gdal, failures: list[str]):
    def handle(level, number, message):
        text = str(message).strip()
        if level >= gdal.CE_Failure:
            failures.append(text)
            print(f"ERROR {number}: {text}", file=sys.stderr)
        elif level == gdal.CE_Warning:
            print(f"Warning {number}: {text}", file=sys.stderr)

    return handle


def is_write_failure(message: str) -> bool:
    return "write" in message.lower()
