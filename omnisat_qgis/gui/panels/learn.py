"""The Learn panel: continue the model's self-supervised pretraining on the ticked layers."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget


class LearnPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        self.button = QPushButton("Learn this area")
        self.button.setToolTip(
            "Continue the model's self-supervised pretraining on the ticked layers over the "
            "area to map; the new model joins the model list (labels, if chosen, score it "
            "before and after)"
        )
        self.minutes = QSpinBox()
        self.minutes.setRange(1, 24 * 60)
        self.minutes.setValue(10)
        self.minutes.setSuffix(" min")
        self.name = QLineEdit("my-area")
        self.name.setToolTip("The new model's name; the same name resumes its last run")
        for widget in (self.button, self.minutes, self.name):
            line.addWidget(widget)
