"""sha256 of downloads whose publisher gives none we can read: recorded at the first download, enforced after.

The pins live in the models folder (``pinned-sha256.json``: {model name: sha256}). The first
download of such a model records its hash and says so; any later download of that model into
the same folder whose hash differs is refused (the file is deleted), so a silently changed or
tampered file never replaces the one the user started with. Deleting the entry accepts a new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.errors import EngineError

PINS_FILE = "pinned-sha256.json"


def _read(folder: Path) -> dict[str, str]:
    path = Path(folder) / PINS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{path} is unreadable ({exc}): fix or delete it (it records downloads' sha256).") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def pinned(folder: Path, name: str) -> str | None:
    """The sha256 recorded for ``name`` in ``folder``, if any."""
    return _read(folder).get(name)


def pin(folder: Path, name: str, sha256: str) -> None:
    """Record ``sha256`` for ``name``; refuse a hash that differs from the one recorded."""
    pins = _read(folder)
    if pins.get(name, sha256) != sha256:
        raise EngineError(
            f"The file downloaded for {name!r} has sha256 {sha256}, but the first download recorded "
            f"{pins[name]} in {Path(folder) / PINS_FILE}: the published file changed or was tampered with. "
            f"It is refused; if the publisher did release a new file, delete the {name!r} entry of that file "
            "and fetch again."
        )
    pins[name] = sha256
    path = Path(folder) / PINS_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(pins, indent=1, sort_keys=True))
    os.replace(temporary, path)
