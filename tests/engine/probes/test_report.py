"""The fit report: a self-contained HTML file holding the confusion matrix, counts and settings."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import numpy as np
import pytest

from engine.probes.metrics import classification_metrics
from engine.probes.report import png_bytes, write_fit_report

CLASSES = ["forest", "water", "urban <built>"]
CM = np.array([[50, 3, 2], [4, 20, 0], [1, 0, 7]])


def decode_png(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("renderer", ["plain", "auto"])
def test_report_holds_the_confusion_matrix(tmp_path, renderer):
    metrics = classification_metrics(CM, CLASSES)
    path = write_fit_report(
        tmp_path / "report.html",
        title="Probe fit",
        metrics=metrics,
        class_names=CLASSES,
        colors=["#00aa00", "#0000ff", "#ff0000"],
        counts={
            "polygons": {"forest": 4, "water": 2, "urban <built>": 1},
            "validation cells": {n: int(s) for n, s in zip(CLASSES, CM.sum(1))},
        },
        settings={"level": "patch", "l2": 0.001},
        notes=["class 'urban' has a single polygon"],
        renderer=renderer,
    )
    text = path.read_text()
    # The confusion matrix as a table, row by row, with the class names escaped.
    table = text[text.index('<table class="confusion">') :]
    table = table[: table.index("</table>")]
    for name, row in zip(CLASSES, CM):
        cells = "".join(f"<td>{v}</td>" for v in row)
        assert f"<td>{name.replace('<', '&lt;').replace('>', '&gt;')}</td>{cells}" in table
    # ... and as an embedded PNG picture that decodes.
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    width, height = decode_png(base64.b64decode(match.group(1)))
    assert width > 50 and height > 50
    assert f"{metrics['overall_accuracy']:.4f}" in text and f"{metrics['macro_f1']:.4f}" in text
    assert "validation cells" in text and "<td>0.0010</td>" in text and "single polygon" in text
    assert "<built>" not in text  # escaped everywhere
    assert not re.search(r'(src|href)="(?!data:)', text)  # self-contained: no external resources


def test_png_writer_round_trips_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    data = png_bytes(image)
    assert decode_png(data) == (5, 7)
    idat_length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = np.frombuffer(zlib.decompress(data[41 : 41 + idat_length]), np.uint8).reshape(7, 1 + 5 * 3)
    assert (raw[:, 0] == 0).all()
    np.testing.assert_array_equal(raw[:, 1:].reshape(7, 5, 3), image)
