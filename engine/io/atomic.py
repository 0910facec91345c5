"""Outputs are written under a temporary name and renamed when complete.

A crash, a cancel or a full disk therefore never leaves a half-written file under
the name the user asked for, and never touches an existing file until the new one
is whole.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from engine.errors import EngineError

TEMP_MARKER = ".omnisat-partial-"


def temporary_name(path: Path) -> Path:
    # Same folder (so the final rename is atomic), hidden, and recognisable so that
    # the plugin can sweep leftovers after killing a worker.
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


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
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception (including cancellation) the temporary file is removed and
    ``path`` is left as it was.
    """
    final = check_output_path(path, setting)
    temp = temporary_name(final)
    try:
        yield temp
        if not temp.exists():
            raise RuntimeError(f"internal error: nothing was written to {temp}")
        os.replace(temp, final)
    except OSError as exc:
        _remove_quietly(temp)
        if exc.errno == 28:  # ENOSPC
            raise EngineError(
                f"The disk is full while writing '{final}': free some space or choose another folder. "
                "Nothing was written."
            ) from None
        raise
    except BaseException:
        _remove_quietly(temp)
        raise


def _remove_quietly(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".aux.xml")):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()


def sweep_partial_outputs(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files left for ``path`` by a worker that was killed."""
    final = Path(path)
    removed = []
    for leftover in final.parent.glob(f".{final.name}{TEMP_MARKER}*"):
        _remove_quietly(leftover)
        removed.append(leftover)
    return removed
