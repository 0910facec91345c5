"""Files of a folder served on 127.0.0.1 with HTTP Range requests, as object storage serves COGs.

python's http.server answers every GET with the whole file; GDAL's /vsicurl/ reads a
GeoTIFF by byte ranges (header, then the blocks it needs), so this handler answers
``Range: bytes=a-b`` with 206 and that slice, and records every request: a test can
check that a window was read without fetching the whole file.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


class RangeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.folder, self.requests = folder, []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        path = self.server.folder / self.path.lstrip("/").split("?")[0]
        return path if path.is_file() and path.parent == self.server.folder else None

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        file = self._file()
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        if file is None:
            self.send_error(404)
            return
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start : end + 1]
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class TreeHandler(RangeHandler):
    """Serves the files of the folder's whole tree (a model hub's ``<repository>/resolve/main/<file>``)."""

    def _file(self) -> Path | None:
        root = self.server.folder.resolve()
        path = (root / self.path.lstrip("/").split("?")[0]).resolve()
        return path if path.is_file() and root in path.parents else None


@contextlib.contextmanager
def served(server: http.server.HTTPServer, before_stop: Callable[[], None] | None = None) -> Iterator:
    """``server`` answering in a thread until the block ends (then ``before_stop``, e.g. to free a stalled answer)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if before_stop is not None:
            before_stop()
        server.shutdown()
        server.server_close()


def serving(folder: Path, tree: bool = False) -> contextlib.AbstractContextManager[RangeServer]:
    """``folder``'s files served (``tree``: its sub-folders' too)."""
    server = RangeServer(folder)
    if tree:
        server.RequestHandlerClass = TreeHandler
    return served(server)
