"""The Results panel: the held-out accuracy of the last fit, per class, with the report's link,
and what the numbers are worth when the model is a toy checkpoint."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QLabel, QVBoxLayout, QWidget

from omnisat_qgis.model_catalog import ModelInfo


class ResultsPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.metrics = QLabel("Draw labels, then Fit and preview.")
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        self.metrics.setOpenExternalLinks(True)
        layout.addWidget(self.metrics)
        self.last: dict[str, Any] | None = None

    def show_fit(self, result: dict[str, Any], model: ModelInfo | None = None) -> None:
        self.last = result
        counts, f1 = result.get("counts", {}), result.get("per_class_f1") or {}
        labelled, held_out = counts.get("labelled cells", {}), counts.get("cells ever held out", {})
        unvalidated = set(result.get("unvalidated_classes") or ()) | {n for n in labelled if not held_out.get(n)}
        per_class = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            f"<td>{'—' if name in unvalidated else f'{f1.get(name, 0):.2f}'}</td>"
            f"<td>{labelled.get(name, 0)}</td><td>{held_out.get(name, 0)}</td></tr>"
            for name in result.get("class_names", labelled)
        )
        note = (
            f"<br>Not validated (no held-out label: draw more, in other places): "
            f"{html.escape(', '.join(sorted(unvalidated)))}"
            if unvalidated
            else ""
        )
        report = result.get("report")
        link = f' — <a href="{Path(report).as_uri()}">report</a>' if report else ""
        if result.get("overall_accuracy") is None:
            scores = "not measured (too few labels to hold any out)"
        else:
            scores = (
                f"OA {result['overall_accuracy']:.2f}, macro-F1 {result['macro_f1']:.2f} "
                f"on {result['validation_cells']} held-out cells"
            )
        toy = (
            f"<br><span style='color:#8a4b00'>'{html.escape(model.name)}' is a toy checkpoint (no learned "
            "knowledge): these scores say what your labels and the raw bands allow, not what a real encoder "
            "does. Download anysat-base for real work.</span>"
            if model is not None and model.is_toy
            else ""
        )
        self.metrics.setText(
            f"<b>Held-out accuracy</b>: {scores}{link}"
            f"<table cellspacing='0' cellpadding='3'><tr><th align='left'>class</th><th>F1</th>"
            f"<th>labelled cells</th><th>held out</th></tr>{per_class}</table>{note}{toy}"
        )

    def show_text(self, text: str) -> None:
        self.metrics.setText(text)
