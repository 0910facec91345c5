"""Resumable HTTP download with progress, a stall timeout and a sha256 check.

Bytes go to ``<name>.part`` beside the destination; a dropped connection, a stall, a
cancel or a full disk keeps them, and the next call asks the server for the rest
(an HTTP Range request). Only a complete file whose sha256 matches is renamed to its
final name: a mismatch deletes it. Proxies come from the standard environment
variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as urllib reads them.
"""

from __future__ import annotations

import errno
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from engine.contract import sha256_of
from engine.errors import EngineError

CHUNK = 1 << 20
USER_AGENT = "omnisat-engine"


class Reporter(Protocol):
    """What a download reports to (engine.runtime.progress.Reporter is one): named here so that io
    imports nothing of the runtime above it."""

    def progress(self, percent: float, message: str = "") -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _open(url: str, offset: int, timeout_s: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    host = urlsplit(url).netloc or url
    try:
        # A new opener reads the proxy environment variables now (urlopen's shared one keeps
        # those of its first call).
        return urllib.request.build_opener().open(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None  # nothing left to send: the .part file is complete
        if exc.code == 404:
            raise EngineError(
                f"{url} was not found (HTTP 404): check the model hub address "
                "(OMNISAT_MODEL_HUB or the plugin's setting) and the model name."
            ) from None
        if exc.code in (401, 403):
            raise EngineError(
                f"{host} refused the download of {url} (HTTP {exc.code}): the file may need "
                "a login, or a proxy blocks it."
            ) from None
        raise EngineError(
            f"{host} answered HTTP {exc.code} ({exc.reason}) for {url}: the server has a problem; "
            "try again later (the download resumes where it stopped)."
        ) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EngineError(
            f"Could not connect to {host} ({reason}): check the network connection, the "
            "proxy (HTTPS_PROXY / HTTP_PROXY) and the model hub address."
        ) from None


def _total_size(response, offset: int) -> int | None:
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
            return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return int(length) + (offset if response.status == 206 else 0) if length and length.isdigit() else None


def download(
    url: str,
    destination: Path,
    sha256: str | None,
    reporter: Reporter,
    timeout_s: float = 60.0,
    start: float = 0.0,
    end: float = 100.0,
) -> bool:
    """Download ``url`` to ``destination``, resuming a ``.part`` file, verify its sha256; progress on [start, end].

    ``sha256`` None: nothing to verify against (the caller records the hash, engine.models.pins); a file
    already at ``destination`` (fetched by another tool, e.g. QGIS's network stack) is taken as it is.
    Return False when ``destination`` was already there with the right sha256 (nothing fetched)."""
    if destination.is_file() and (sha256 is None or sha256_of(destination) == sha256):
        reporter.progress(end, f"{destination.name} already downloaded and verified")
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    host = urlsplit(url).netloc or url
    response = _open(url, offset, timeout_s)
    if response is not None:
        with response:
            if offset and response.status != 206:
                reporter.log(f"{host} does not resume downloads: starting {destination.name} again", "warning")
                offset = 0
            elif offset:
                reporter.log(f"resuming {destination.name} at {_megabytes(offset)}")
            total = _total_size(response, offset)
            done = offset
            try:
                with part.open("ab" if offset else "wb") as out:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        shown = f"{_megabytes(done)} of {_megabytes(total)}" if total else _megabytes(done)
                        fraction = done / total if total else 0.0
                        reporter.progress(
                            start + (end - start) * 0.9 * min(fraction, 1.0), f"downloading {destination.name}: {shown}"
                        )
            except TimeoutError:
                raise EngineError(
                    f"{host} sent nothing for {timeout_s:.0f} s while downloading {destination.name}: "
                    f"run the command again to resume ({_megabytes(done)} kept in {part})."
                ) from None
            except (http.client.IncompleteRead, ConnectionError, urllib.error.URLError) as exc:
                raise EngineError(
                    f"The connection to {host} dropped after {_megabytes(done)} ({exc.__class__.__name__}): "
                    f"run the command again to resume from {part}."
                ) from None
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise EngineError(
                        f"The disk is full while downloading to {part} ({_megabytes(done)} written): "
                        "free some space and run the command again to resume."
                    ) from None
                raise
            if total is not None and done < total:
                raise EngineError(
                    f"The connection to {host} closed after {_megabytes(done)} of {_megabytes(total)}: "
                    f"run the command again to resume from {part}."
                )
    reporter.progress(start + (end - start) * 0.9, f"checking the sha256 of {destination.name}")
    found = sha256_of(part)
    if sha256 is not None and found != sha256:
        part.unlink()
        raise EngineError(
            f"The download of {url} is corrupted or not the published file: its sha256 is {found}, "
            f"expected {sha256}. It was deleted; run the command again to download it anew."
        )
    os.replace(part, destination)
    reporter.progress(end, f"downloaded and verified {destination.name}")
    return True
