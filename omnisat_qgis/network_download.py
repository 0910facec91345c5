"""Download a large file through QGIS's network stack: the proxy and authentication the user
configured in QGIS apply. Resumable (HTTP Range on a ``.part`` file), streamed to disk,
Cancel, a stall timeout, and the sha256 checked before the file gets its final name.

Runs a local event loop, so it works in the GUI thread and in a Processing thread alike.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsApplication, QgsNetworkAccessManager
from qgis.PyQt.QtCore import QEventLoop, QTimer, QUrl
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from omnisat_qgis.contract import contract


class DownloadError(Exception):
    """The message names the address or file and what to do."""


class DownloadCancelled(DownloadError):
    pass


@dataclass
class DownloadCallbacks:
    progress: Callable[[int, int | None], None] = lambda done, total: None  # bytes so far, total
    log: Callable[[str], None] = lambda text: None
    is_cancelled: Callable[[], bool] = lambda: False


def _status(reply) -> int:
    value = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
    return int(value) if value is not None else 0


def _total(reply, offset: int, status: int) -> int | None:
    content_range = bytes(reply.rawHeader(b"Content-Range")).decode()
    if status == 206 and "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = reply.header(QNetworkRequest.KnownHeaders.ContentLengthHeader)
    return int(length) + (offset if status == 206 else 0) if length is not None else None


def download(
    url: str,
    destination: Path,
    sha256: str | None,
    callbacks: DownloadCallbacks | None = None,
    stall_timeout_s: float = 60.0,
    authcfg: str = "",
    sha256_source: str = "the published file's",
) -> bool:
    """Fetch ``url`` into ``destination``; False when it was already there and verified.

    ``sha256`` None: nothing to check against yet (the engine records the hash of a first download,
    engine.models.pins); a file already at ``destination`` is then taken as it is."""
    callbacks = callbacks or DownloadCallbacks()
    if destination.is_file() and (sha256 is None or contract.sha256_of(destination) == sha256):
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = QNetworkRequest(QUrl(url))
    # The hub answers with a redirect to its file store.
    request.setAttribute(
        QNetworkRequest.Attribute.RedirectPolicyAttribute, QNetworkRequest.RedirectPolicy.NoLessSafeRedirectPolicy
    )
    # Never from or into QGIS's network cache: a 500 MB file would evict everything, and a
    # cached answer would hide the server's.
    request.setAttribute(
        QNetworkRequest.Attribute.CacheLoadControlAttribute, QNetworkRequest.CacheLoadControl.AlwaysNetwork
    )
    request.setAttribute(QNetworkRequest.Attribute.CacheSaveControlAttribute, False)
    if offset:
        request.setRawHeader(b"Range", f"bytes={offset}-".encode())
    if authcfg:
        QgsApplication.authManager().updateNetworkRequest(request, authcfg)
    reply = QgsNetworkAccessManager.instance().get(request)
    state = {"out": None, "done": offset, "total": None, "last": time.monotonic(), "failure": None, "stopped": None}
    loop = QEventLoop()

    def open_output() -> bool:
        status = _status(reply)
        if status not in (200, 206):
            return False
        if state["out"] is None:
            resume = offset and status == 206
            if offset and not resume:
                callbacks.log("the server does not resume downloads: starting again")
                state["done"] = 0
            state["total"] = _total(reply, offset if resume else 0, status)
            state["out"] = part.open("ab" if resume else "wb")
        return True

    def on_data():
        state["last"] = time.monotonic()
        if state["failure"] or state["stopped"] or not open_output():
            return
        if callbacks.is_cancelled():
            state["stopped"] = "cancelled"
            reply.abort()
            return
        data = bytes(reply.readAll())
        try:
            state["out"].write(data)
        except OSError as exc:
            state["failure"] = exc
            reply.abort()
            return
        state["done"] += len(data)
        callbacks.progress(state["done"], state["total"])

    def watch():
        if callbacks.is_cancelled():
            state["stopped"] = "cancelled"
            reply.abort()
        elif time.monotonic() - state["last"] > stall_timeout_s:
            state["stopped"] = "stalled"
            reply.abort()

    timer = QTimer()
    timer.setInterval(200)
    timer.timeout.connect(watch)
    reply.readyRead.connect(on_data)
    reply.finished.connect(loop.quit)
    timer.start()
    if not reply.isFinished():
        loop.exec()
    timer.stop()
    on_data()  # whatever arrived with the last signal
    if state["out"] is not None:
        state["out"].close()
    status, error = _status(reply), reply.error()
    reply.deleteLater()
    kept = f"{state['done'] / 1e6:,.1f} MB kept in {part}"
    failure = state["failure"]
    if isinstance(failure, OSError):
        if failure.errno == errno.ENOSPC:
            raise DownloadError(
                f"The disk is full while downloading to {part} ({kept}): free some space and download again to resume."
            )
        raise DownloadError(f"Cannot write {part}: {failure}.")
    if state["stopped"] == "cancelled":
        raise DownloadCancelled(f"Download cancelled ({kept}; the next download resumes from there).")
    if state["stopped"] == "stalled":
        raise DownloadError(
            f"{QUrl(url).host()} sent nothing for {stall_timeout_s:.0f} s: download again to resume ({kept})."
        )
    if status == 416 and offset:
        pass  # nothing left to fetch: the part is complete
    elif status == 404:
        raise DownloadError(f"{url} was not found (HTTP 404): check the model hub address setting.")
    elif status >= 400:
        raise DownloadError(
            f"{QUrl(url).host()} answered HTTP {status} for {url}: try again later "
            "(the download resumes where it stopped)."
        )
    elif error != QNetworkReply.NetworkError.NoError:
        raise DownloadError(
            f"The download of {url} failed ({reply.errorString()}): check the network and "
            f"QGIS's proxy settings (Settings > Options > Network), then download again to resume ({kept})."
        )
    elif state["total"] is not None and state["done"] < state["total"]:
        raise DownloadError(f"The connection closed after {kept}: download again to resume.")
    found = contract.sha256_of(part)
    if sha256 is not None and found != sha256:
        part.unlink()
        raise DownloadError(
            f"The download of {url} is corrupted or not the published file: its sha256 is {found}, "
            f"expected {sha256} ({sha256_source}). It was deleted; download again."
        )
    os.replace(part, destination)
    return True
