"""A model hub on 127.0.0.1 for download tests: one file with HTTP Range support and the
ways a real server fails (404, 500, a dropped connection, a stall, no Range support).

It serves a synthetic checkpoint in the reference AnySat layout (the tiny key list in
tests/engine/data, random weights, ``{"state_dict": ...}``) under the hub's URL layout.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from pathlib import Path

import torch

from tests.engine.models.test_anysat_import import synthetic_state
from tests.engine.range_server import served

REPOSITORY, FILE = "test-org/AnySat-tiny", "models/AnySat.pth"


def synthetic_checkpoint(folder: Path) -> bytes:
    path = folder / "AnySat.pth"
    torch.save({"state_dict": synthetic_state("tiny", seed=3)}, path)
    return path.read_bytes()


class Hub(http.server.ThreadingHTTPServer):
    """Serves one file with Range support; ``mode`` makes it fail the way a real server can."""

    daemon_threads = True

    def __init__(self, payload: bytes):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.payload, self.mode, self.requests = payload, "ok", []
        self.path = f"/{REPOSITORY}/resolve/main/{FILE}"
        self.release = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        hub: Hub = self.server
        hub.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if self.path != hub.path or hub.mode == "404":
            self.send_error(404)
            return
        if hub.mode == "500":
            self.send_error(500)
            return
        payload, start = hub.payload, 0
        if self.headers.get("Range", "").startswith("bytes=") and hub.mode != "no-range":
            start = int(self.headers["Range"][len("bytes=") :].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if hub.mode in ("drop", "stall"):
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            if hub.mode == "stall":
                hub.release.wait(30)
            hub.mode = "ok"  # the next request gets the rest
            return  # closing here leaves the client short of Content-Length
        try:
            self.wfile.write(body)
        except ConnectionError:
            pass  # the client stopped reading (the full-disk test)


def serving(payload: bytes) -> contextlib.AbstractContextManager[Hub]:
    server = Hub(payload)
    return served(server, before_stop=server.release.set)
