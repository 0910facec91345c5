"""Errors meant for a person: every message names the file, layer or setting and the fix."""

import signal
import sys
import threading


class EngineError(Exception):
    """A problem the user can fix (bad input, missing file, wrong setting).

    Front ends print its message as is, without a traceback.
    """


class DamagedInput(EngineError):
    """GDAL reported that it could not read an input whole (the message holds its words);
    engine.runtime.registry.run_operation names the operation's inputs."""


class Cancelled(Exception):
    """The run was cancelled (worker terminated or Ctrl-C); outputs were discarded."""


_termination_signal: int | None = None


def _raise_cancelled(signum, frame):
    global _termination_signal
    _termination_signal = signum
    raise Cancelled(f"cancelled by signal {signum}")


def termination_requested() -> bool:
    """Whether SIGTERM / SIGHUP arrived. Library code the signal interrupts may re-wrap our
    Cancelled into its own error (rasterio turns it into a ValueError about nodata): front ends
    ask this before calling a failure an error."""
    return _termination_signal is not None


def cancel_on_termination() -> None:
    """SIGTERM (and SIGHUP: the terminal closed) raise Cancelled, so that every atomic output
    removes its temporary file on the way out. The CLI and the worker both install it."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (e.g. the CLI called from a test's thread)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    if sys.platform != "win32":
        signal.signal(signal.SIGHUP, _raise_cancelled)
