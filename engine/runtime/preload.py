"""Modules a run will need later, imported now in a background thread.

Some imports cost seconds once a process (measured at load 15 on 2 cores: ``torch._dynamo``, which
the first PyTorch optimizer pulls in, 5-11 s; matplotlib for the report's figures, several s) and
cannot report progress: started early, they overlap the reading and mapping before them instead
of holding a later step silent. A module that fails to import is left for its user to report.
"""

from __future__ import annotations

import contextlib
import importlib
import threading


def preload(*modules: str) -> threading.Thread:
    def load() -> None:
        for name in modules:
            with contextlib.suppress(Exception):  # its user imports it again and reports the error
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="omnisat-preload", daemon=True)
    thread.start()
    return thread
