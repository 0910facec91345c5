"""Outputs are written under a temporary name, verified, and renamed when complete.

A crash, a cancel or a full disk therefore never leaves a half-written file under
the name the user asked for, and never touches an existing file until the new one
is whole. Whole means verified: GDAL may report a failed block write only through
its error handler (rasterio does not raise), so the errors GDAL reports while the
file is written are collected, and the temporary file is opened again and checked
(every GeoTIFF block or strip of every band read back and decoded, a safetensors
header that fits, JSON that parses) before it replaces anything.

Temporary names carry the writer's process id and a tag of its host
(``.NAME.omnisat-partial-PID-HOST-XXXXXXXX.ext``): a run removes the leftovers of
processes of its own host that are gone (killed with SIGKILL, where nothing can
clean up) from the folder it writes to, never those of a live process, and never
those another machine writes into a shared folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError, safe_open

from engine.errors import DamagedInput, EngineError
from engine.io.collisions import NamedPath, with_vrt_sources
from engine.io.gdal_errors import gdal_failures, is_write_failure

TEMP_MARKER = ".omnisat-partial-"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded")
READ_BACK_BANDS = 16  # bands read at once when a written GeoTIFF is read back (bounds the memory)
HOST_TAG = hashlib.sha1(socket.gethostname().encode(), usedforsecurity=False).hexdigest()[:8]  # a name tag, no secret


def temporary_name(path: Path) -> Path:
    # Same folder (so the final rename is atomic), hidden, and with the writer's pid so
    # that only the leftovers of dead processes are ever swept.
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{HOST_TAG}-{uuid.uuid4().hex[:8]}{path.suffix}")


def check_output_path(path: str | os.PathLike, setting: str = "output") -> Path:
    """Validate an output path before any work is done."""
    out = Path(path).expanduser()
    if not str(path):
        raise EngineError(f"The {setting} path is empty: give a file name to write.")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise EngineError(
            f"The folder of the {setting} '{out}' does not exist: create '{folder}' or choose another folder."
        )
    if not os.access(folder, os.W_OK):
        raise EngineError(f"The folder '{folder}' of the {setting} is not writable: choose another folder.")
    if out.is_dir():
        raise EngineError(f"The {setting} '{out}' is a folder: give a file name.")
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, setting: str = "output") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; verify it and rename it to ``path`` on success.

    On any exception (including cancellation) or a failed verification the temporary
    file is removed and ``path`` is left as it was.
    """
    final = check_output_path(path, setting)
    sweep_partial_outputs(final.parent)
    temp = temporary_name(final)
    try:
        with gdal_failures() as failures:
            yield temp
            verify_output(temp, final, setting, failures)
        temp.chmod(new_file_mode())  # safetensors creates its files 0600; every output gets one mode
        os.replace(temp, final)
    except EngineError:
        _remove_quietly(temp)
        raise
    except BaseException as exc:
        _remove_quietly(temp)
        if is_disk_full(exc):
            raise EngineError(disk_full_message(final, setting)) from None
        raise


def is_disk_full(exc: BaseException | str) -> bool:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return any(text in str(exc) for text in DISK_FULL_TEXTS)  # GDAL's and safetensors' messages carry no errno


def disk_full_message(final: Path, setting: str) -> str:
    kept = " The file that was there is unchanged." if final.exists() else ""
    return (
        f"The disk is full while writing the {setting} '{final}': free some space or choose another folder. "
        f"Nothing was written.{kept}"
    )


def new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def verify_output(temp: Path, final: Path, setting: str, failures: list[str]) -> None:
    """Raise EngineError unless ``temp`` is a complete file (checked by reading it back) made
    while GDAL reported no failure (``failures``: those of the whole operation so far)."""
    if not temp.exists():
        raise RuntimeError(f"internal error: nothing was written to {temp}")
    written = [f for f in failures if is_write_failure(f) or is_disk_full(f)]
    if failures and not written:
        raise DamagedInput(failures[0])  # the output was made from data GDAL could not decode
    problem = written[0] if written else None
    if problem is None:
        try:
            problem = _read_back_problem(temp)
        except OSError as exc:
            problem = str(exc)
    if problem is None:
        return
    if is_disk_full(problem) or _free_bytes(temp.parent) < 1 << 20:
        raise EngineError(disk_full_message(final, setting))
    kept = " The file that was there is unchanged." if final.exists() else ""
    raise EngineError(
        f"Writing the {setting} '{final}' failed ({problem[:200]}): nothing was written.{kept} "
        "Check the disk and the folder, then run again."
    )


def _read_back_problem(temp: Path) -> str | None:
    size = temp.stat().st_size
    if size == 0:
        return "the file is empty"
    suffix = temp.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _geotiff_problem(temp)
    if suffix == ".vrt":
        return _vrt_problem(temp)
    if suffix == ".safetensors":
        try:
            with safe_open(str(temp), "pt") as f:
                f.keys()
        except SafetensorError as exc:
            return str(exc)
    if suffix == ".json":
        try:
            json.loads(temp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return f"the JSON written does not read back: {exc}"
    return None


def _geotiff_problem(temp: Path) -> str | None:
    """Every block (tile or strip) of every band reads back and decodes: a failed write leaves one
    short, missing or cut, whatever the layout (a stripped file's last strips as much as a tile)."""
    import rasterio  # lazy: keeps rasterio out of this module
    from rasterio.errors import RasterioError, RasterioIOError  # lazy: keeps rasterio out of this module

    try:
        with rasterio.open(temp) as ds:
            if ds.count == 0:
                return "the GeoTIFF has no band"
            for _, window in ds.block_windows(1):  # every band of a GeoTIFF has the first band's blocks
                for first in range(1, ds.count + 1, READ_BACK_BANDS):
                    bands = list(range(first, min(first + READ_BACK_BANDS, ds.count + 1)))
                    try:
                        ds.read(bands, window=window)
                    except (RasterioError, RasterioIOError) as exc:
                        detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
                        return (
                            f"block at row {window.row_off}, column {window.col_off} of bands "
                            f"{bands[0]}-{bands[-1]} does not read back ({detail})"
                        )
    except (RasterioError, RasterioIOError) as exc:
        return str(exc).splitlines()[0] if str(exc) else "the GeoTIFF does not open"
    return None


def _vrt_problem(temp: Path) -> str | None:
    """A VRT's blocks are its sources' (each verified when it was written): it must open, and every
    local file it names must exist."""
    import rasterio  # lazy: keeps rasterio out of this module
    from rasterio.errors import RasterioError, RasterioIOError  # lazy: keeps rasterio out of this module

    try:
        with rasterio.open(temp):
            pass
    except (RasterioError, RasterioIOError) as exc:
        return str(exc).splitlines()[0] if str(exc) else "the VRT does not open"
    named = [Path(source.path) for source in with_vrt_sources(NamedPath("output", str(temp)))[1:]]
    missing = [path for path in named if not str(path).startswith("/vsi") and not path.is_file()]
    return f"the VRT names '{missing[0]}', which does not exist" if missing else None


def _free_bytes(folder: Path) -> int:
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return 1 << 62
    return stats.f_bavail * stats.f_frsize


def _remove_quietly(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".aux.xml")):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()


def partial_writer(path: Path) -> tuple[int, str] | None:
    """(process id, host tag) of the writer in a temporary name, or None for a name that is not one."""
    _, marker, rest = path.name.partition(TEMP_MARKER)
    parts = rest.split("-")
    if not marker or len(parts) < 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1]


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return True  # no cheap liveness test without a handle: never sweep another process's files
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def sweep_partial_outputs(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writer, on this host, is gone (killed before it
    could clean up)."""
    removed = []
    with contextlib.suppress(OSError):
        for leftover in Path(folder).glob(f".*{TEMP_MARKER}*"):
            writer = partial_writer(leftover)
            if writer is not None and writer[1] == HOST_TAG and not process_alive(writer[0]):
                with contextlib.suppress(OSError):
                    leftover.unlink()
                removed.append(leftover)
    return removed
