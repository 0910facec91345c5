"""The Model panel, at the top of the dock: which model, whether the engine can run, and what
the model is worth, with the set-up and the download one click away.

Statuses an analyst reads at once: the engine is ready (its Python) or not set up (button:
Set up the engine); the chosen model is installed, a toy checkpoint with no learned
knowledge (warning and button: Download anysat-base), or an official model not downloaded
yet (button: Download).
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from omnisat_qgis import settings
from omnisat_qgis.model_catalog import DOWNLOADABLE, CatalogError, ModelInfo, model_info, picker_entries

BROWSE = "Browse…"
OFFICIAL = "anysat-base"  # what a toy checkpoint's warning offers


def engine_status() -> tuple[bool, str]:
    """(ready, what to say): whether a worker Python is configured and present."""
    try:
        python, source = settings.worker_python()
    except settings.SettingsError as exc:
        return False, f"Engine not set up: {exc}"
    return True, f"Engine ready: {python} ({source})."


def toy_warning(info: ModelInfo) -> str:
    return (
        f"'{info.name}' holds no learned knowledge: it was pretrained {info.provenance.get('steps')} steps on a "
        "few tiles so that the plugin runs out of the box. Its maps show what a probe on near-random features "
        f"gives; for real work download '{OFFICIAL}' ({DOWNLOADABLE[OFFICIAL]})."
    )


class ModelPanel(QWidget):
    model_changed = pyqtSignal(object)  # the new ModelInfo

    def __init__(
        self, say: Callable[..., object], set_up: Callable[[], None], download: Callable[[str], None], parent=None
    ):
        super().__init__(parent)
        self.say, self._set_up, self._download = say, set_up, download
        self.info: ModelInfo | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        line = QHBoxLayout()
        line.addWidget(QLabel("Model"))
        self.combo = QComboBox()
        self.combo.activated.connect(self._activated)
        line.addWidget(self.combo, 1)
        layout.addLayout(line)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("QLabel { color: #8a4b00; }")
        layout.addWidget(self.warning)
        status = QHBoxLayout()
        self.engine = QLabel()
        self.engine.setWordWrap(True)
        self.engine.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setup_button = QPushButton("Set up the engine…")
        self.setup_button.setToolTip("Build the Python environment the engine runs in (torch, rasterio), once")
        self.setup_button.clicked.connect(lambda: self._set_up())
        self.download_button = QPushButton(f"Download {OFFICIAL}…")
        self.download_button.setToolTip("Download and convert the official AnySat weights into the models folder")
        self.download_button.clicked.connect(lambda: self._download(OFFICIAL))
        status.addWidget(self.engine, 1)
        status.addWidget(self.setup_button)
        status.addWidget(self.download_button)
        layout.addLayout(status)

    # ------------------------------------------------------------------ the list of models
    def reload(self, selected: str | None = None) -> None:
        previous = selected or self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        for entry in picker_entries(settings.models_folder()):
            text = entry.name if entry.installed else f"{entry.name} (not downloaded)"
            self.combo.addItem(text, str(entry.path) if entry.path else f"download:{entry.name}")
            self.combo.setItemData(self.combo.count() - 1, entry.note, Qt.ItemDataRole.ToolTipRole)
        self.combo.addItem(BROWSE, None)
        self.combo.blockSignals(False)
        if previous and not str(previous).startswith("download:"):
            self.select(previous)
        elif self.combo.count() > 1:
            self.select(self.combo.itemData(0))
        self.refresh_status()

    def select(self, path: str) -> ModelInfo | None:
        try:
            info = model_info(path)
        except CatalogError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return None
        index = self.combo.findData(str(info.path))
        if index < 0:
            self.combo.insertItem(self.combo.count() - 1, info.name, str(info.path))
            index = self.combo.count() - 2
        self.combo.setCurrentIndex(index)
        self.info = info
        self.summary.setText(info.summary())
        self.refresh_status()
        self.model_changed.emit(info)
        return info

    def _activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data is None:
            path, _ = QFileDialog.getOpenFileName(self, "OmniSat model", "", "Checkpoint (*.safetensors)")
            if path:
                self.select(path)
            else:
                self._show_current()
            return
        if str(data).startswith("download:"):
            name = str(data).split(":", 1)[1]
            self._show_current()  # the combo stays on an installed model until the download ends
            self.say(
                f"'{name}' is not downloaded yet: press Download ({DOWNLOADABLE.get(name, 'once')}), then choose it.",
                Qgis.MessageLevel.Warning,
                actions=((f"Download {name}…", lambda: self._download(name)),),
            )
            return
        self.select(data)

    def _show_current(self) -> None:
        if self.info is not None:
            self.combo.setCurrentIndex(max(self.combo.findData(str(self.info.path)), 0))

    # ------------------------------------------------------------------ status
    def refresh_status(self) -> None:
        ready, text = engine_status()
        self.engine.setText(text if ready else "Engine not set up: press Set up the engine (once, a few minutes).")
        self.engine.setToolTip(text)
        self.setup_button.setText("Set up the engine…" if not ready else "Engine set-up…")
        self.setup_button.setStyleSheet("" if ready else "QPushButton { font-weight: bold; }")
        installed = {self.combo.itemData(i) for i in range(self.combo.count())}
        self.download_button.setVisible(f"download:{OFFICIAL}" in installed)
        self.warning.setText(toy_warning(self.info) if self.info is not None and self.info.is_toy else "")
        self.warning.setVisible(bool(self.warning.text()))

    @property
    def engine_ready(self) -> bool:
        return engine_status()[0]
