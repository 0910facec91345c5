"""Accuracy assessment in the dock: draw a probability sample of a class map, label it point by
point, and get the areas with their intervals.

The panel drives the engine's ``sample-map`` (with ``dry_run`` for the sizes shown before
drawing) and ``assess`` operations, the requests the Processing algorithms send. Labelling
needs no engine: the panel reads and writes the sample GeoPackage through QGIS, one feature
at a time straight through the data provider, so a crash or QGIS closing loses at most the
label being typed, and opening the layer again resumes at the first point not labelled yet.

Keys (while the panel has the focus): 1-9 and 0 label with the first ten classes, N "not
sure", D "no data", Right / Left the next / previous point, U the first point not labelled.

Side views: up to two extra map views (other imagery: a VHR image, another date), each one
layer, kept on the current point at the labelling scale with the sampling unit drawn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsMapLayer,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsMapCanvas, QgsMapLayerComboBox, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from omnisat_qgis.gui.engine_task import EngineTask, Step
from omnisat_qgis.styling import class_table

LAYER, DESIGN_TABLE = "reference_sample", "sample_design"
NOT_SURE, NO_DATA = "not sure", "no data"
DIGITS = [
    Qt.Key.Key_1,
    Qt.Key.Key_2,
    Qt.Key.Key_3,
    Qt.Key.Key_4,
    Qt.Key.Key_5,
    Qt.Key.Key_6,
    Qt.Key.Key_7,
    Qt.Key.Key_8,
    Qt.Key.Key_9,
    Qt.Key.Key_0,
]


class SampleError(Exception):
    """A sample layer or a setting the panel cannot use; the text says which and the fix."""


@dataclass(frozen=True)
class SampleRequest:
    """What the panel asks sample-map for: the engine's parameter names, one to one."""

    classes: str
    output: str
    design: str = "stratified"
    allocation: str = "proportional"
    total: int = 500
    min_per_class: int = 50
    target_se: float | None = None
    target_class: str | None = None
    expected_users_accuracy: list[float] | None = None
    min_distance: float = 0.0
    seed: int = 0
    dry_run: bool = False

    def step(self) -> Step:
        params = {k: v for k, v in self.__dict__.items() if v is not None}
        outputs = () if self.dry_run else (self.output,)
        return Step("sample-map", params, outputs, "Sizing the sample" if self.dry_run else "Drawing the sample")


def design_of(path: str) -> dict[str, Any] | None:
    """The design a sample GeoPackage records (engine.analysis.sample_layer), or None."""
    table = QgsVectorLayer(f"{path}|layername={DESIGN_TABLE}", DESIGN_TABLE, "ogr")
    if not table.isValid():
        return None
    for feature in table.getFeatures():
        if feature["key"] == "design":
            try:
                return json.loads(feature["value"])
            except (TypeError, ValueError):
                raise SampleError(f"The design recorded in '{path}' cannot be read: draw the sample again.") from None
    return None


def file_of(layer: QgsMapLayer) -> str:
    return layer.source().split("|")[0]


def unit_band(canvas: QgsMapCanvas) -> QgsRubberBand:
    """The sampling unit's outline on a canvas: red, not filled."""
    band = QgsRubberBand(canvas, Qgis.GeometryType.Polygon)
    band.setStrokeColor(QColor(255, 0, 0))
    band.setFillColor(QColor(255, 0, 0, 0))
    band.setWidth(2)
    return band


def frame(canvas: QgsMapCanvas, band: QgsRubberBand, unit: QgsGeometry, crs, scale: int) -> None:
    """Centre ``canvas`` on the unit (in ``crs``) at ``scale`` and draw the unit with ``band``."""
    centre = QgsCoordinateTransform(crs, canvas.mapSettings().destinationCrs(), QgsProject.instance()).transform(
        unit.centroid().asPoint()
    )
    extent = canvas.extent()
    if extent.isEmpty() or not math.isfinite(extent.width()):  # a canvas that never showed anything
        canvas.setExtent(QgsRectangle(centre.x() - 50, centre.y() - 50, centre.x() + 50, centre.y() + 50))
    canvas.setCenter(centre)
    canvas.zoomScale(scale)
    band.setToGeometry(unit, crs)
    canvas.refresh()


class SideView(QWidget):
    """An extra map view of one chosen layer (say a VHR image, or another date), which the panel keeps
    on the current point at the labelling scale, the sampling unit drawn."""

    SIZE = 220  # pixels: two fit side by side in the dock

    def __init__(self, title: str, changed, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # Connected before the combo exists, so that it runs before the combo's own reaction to a removal.
        QgsProject.instance().layersWillBeRemoved.connect(self._layers_removed)
        self.combo = QgsMapLayerComboBox()
        self.combo.setAllowEmptyLayer(True, f"{title}: none")
        self.combo.setLayer(None)
        self.combo.setToolTip("A layer to see beside the main map, on the same point and at the same scale")
        self.canvas = QgsMapCanvas()
        # A fixed size: a view stretched by the dock's layout after its last render showed the point off-centre.
        self.canvas.setFixedSize(self.SIZE, self.SIZE)
        self.canvas.setCanvasColor(QColor(255, 255, 255))
        self.canvas.setVisible(False)
        self.band = unit_band(self.canvas)
        layout.addWidget(self.combo)
        layout.addWidget(self.canvas)
        self.combo.layerChanged.connect(lambda layer: (self._show(layer), changed()))

    def _layers_removed(self, layer_ids) -> None:
        # The combo would move on to another layer by itself: a view that changes imagery unasked misleads.
        if self.layer() is not None and self.layer().id() in layer_ids:
            self.combo.setLayer(None)

    def layer(self) -> QgsMapLayer | None:
        return self.combo.currentLayer()

    def _show(self, layer) -> None:
        self.canvas.setLayers([layer] if layer is not None else [])
        if layer is not None:
            self.canvas.setDestinationCrs(layer.crs())
            self.canvas.setExtent(layer.extent())  # until there is a point to centre on
        self.canvas.setVisible(layer is not None)


class AssessmentPanel(QWidget):
    def __init__(self, canvas=None, parent=None, reference_field: str = "reference"):
        super().__init__(parent)
        self.canvas = canvas
        self.reference_field = reference_field
        self.layer: QgsVectorLayer | None = None
        self.design: dict[str, Any] | None = None
        self.classes: list[str] = []
        self.fids: list[int] = []
        self.position = 0
        self.task: EngineTask | None = None
        self.messages: list[str] = []
        self.rubber: QgsRubberBand | None = None
        self.side_views: list[SideView] = []
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()
        QgsProject.instance().layerWillBeRemoved.connect(self._layer_removed)

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._sample_box())
        layout.addWidget(self._label_box())
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setOpenExternalLinks(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _sample_box(self) -> QWidget:
        box = QgsCollapsibleGroupBox("1. Draw a sample of the map")
        form = QFormLayout(box)
        self.map_combo = QgsMapLayerComboBox()
        self.map_combo.setFilters(Qgis.LayerFilter.RasterLayer)
        form.addRow("Class map", self.map_combo)
        self.design_combo = QComboBox()
        self.design_combo.addItems(["stratified", "simple", "systematic"])
        self.allocation_combo = QComboBox()
        self.allocation_combo.addItems(["proportional", "equal", "neyman"])
        form.addRow("Design", self.design_combo)
        form.addRow("Allocation", self.allocation_combo)
        self.total_spin = QSpinBox()
        self.total_spin.setRange(1, 1_000_000)
        self.total_spin.setValue(500)
        self.min_spin = QSpinBox()
        self.min_spin.setRange(0, 100_000)
        self.min_spin.setValue(50)
        form.addRow("Points (without a target)", self.total_spin)
        form.addRow("Minimum per class", self.min_spin)
        self.target_spin = QDoubleSpinBox()
        self.target_spin.setRange(0.0, 0.5)
        self.target_spin.setDecimals(3)
        self.target_spin.setSingleStep(0.005)
        self.target_spin.setSpecialValueText("none")
        self.target_spin.setToolTip(
            "Standard error wanted for the overall accuracy, or for the target class's "
            "share of the map (0..1); sets the number of points"
        )
        self.target_class = QComboBox()
        self.target_class.setToolTip(
            "The class whose area share the target standard error is for (from the map's classes)"
        )
        self.map_combo.layerChanged.connect(self._map_chosen)
        self.expected = QLineEdit()
        self.expected.setPlaceholderText("e.g. 0.9, 0.8, 0.7 (one per map class)")
        form.addRow("Target standard error", self.target_spin)
        form.addRow("…of the class", self.target_class)
        form.addRow("Expected user's accuracies", self.expected)
        self.distance_spin = QDoubleSpinBox()
        self.distance_spin.setRange(0.0, 1e7)
        self.distance_spin.setSpecialValueText("none")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        form.addRow("Minimum distance (map units)", self.distance_spin)
        form.addRow("Seed", self.seed_spin)
        buttons = QHBoxLayout()
        self.preview_button = QPushButton("Sizes per class")
        self.preview_button.setToolTip("How many points each class gets with these settings, before drawing")
        self.preview_button.clicked.connect(lambda: self.draw(dry_run=True))
        self.draw_button = QPushButton("Draw sample…")
        self.draw_button.clicked.connect(lambda: self.draw(dry_run=False))
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.draw_button)
        form.addRow(buttons)
        self.sizes = QLabel()
        self.sizes.setWordWrap(True)
        form.addRow(self.sizes)
        self._map_chosen(self.map_combo.currentLayer())
        return box

    def _map_chosen(self, layer) -> None:
        """The target's class list and the expected accuracies' hint follow the chosen map's classes."""
        names = (
            [name for _, name, _ in class_table(layer)] if layer is not None and layer.providerType() == "gdal" else []
        )
        self.target_class.clear()
        self.target_class.addItem("overall accuracy", None)
        for name in names:
            self.target_class.addItem(name, name)
        self.expected.setPlaceholderText(
            f"one per class, in this order: {', '.join(names)}" if names else "e.g. 0.9, 0.8, 0.7 (one per map class)"
        )

    def _label_box(self) -> QWidget:
        box = QgsCollapsibleGroupBox("2. Label the points")
        layout = QVBoxLayout(box)
        line = QHBoxLayout()
        self.sample_combo = QgsMapLayerComboBox()
        self.sample_combo.setFilters(Qgis.LayerFilter.PointLayer)
        self.sample_combo.setAllowEmptyLayer(True)
        self.sample_combo.setLayer(None)
        self.sample_combo.layerChanged.connect(self._layer_chosen)
        line.addWidget(QLabel("Sample"))
        line.addWidget(self.sample_combo, 1)
        layout.addLayout(line)
        options = QHBoxLayout()
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(100, 10_000_000)
        self.scale_spin.setValue(2000)
        self.scale_spin.setPrefix("1:")
        self.scale_spin.valueChanged.connect(lambda: self.show_point())
        self.unit_spin = QSpinBox()
        self.unit_spin.setRange(1, 99)
        self.unit_spin.setSingleStep(2)
        self.unit_spin.setSuffix(" px")
        self.unit_spin.setToolTip("Sampling unit drawn around the point: 1 pixel, or a block of n x n pixels")
        self.unit_spin.valueChanged.connect(lambda: self.show_point())
        self.blind = QCheckBox("Blind (hide the map class)")
        self.blind.toggled.connect(lambda: self.show_point())
        options.addWidget(QLabel("Scale"))
        options.addWidget(self.scale_spin)
        options.addWidget(QLabel("Unit"))
        options.addWidget(self.unit_spin)
        options.addWidget(self.blind)
        layout.addLayout(options)
        sides = QHBoxLayout()
        for k in (1, 2):
            view = SideView(f"Side view {k}", lambda: self.show_point())
            self.side_views.append(view)
            sides.addWidget(view)
        layout.addLayout(sides)
        self.where = QLabel("Choose a sample layer (drawn above, or opened from a .gpkg).")
        self.where.setWordWrap(True)
        layout.addWidget(self.where)
        self.class_grid = QGridLayout()
        layout.addLayout(self.class_grid)
        self.class_buttons: list[QPushButton] = []
        flags = QHBoxLayout()
        self.not_sure_button = QPushButton("Not sure (N)")
        self.not_sure_button.clicked.connect(lambda: self.label(None, NOT_SURE))
        self.no_data_button = QPushButton("No data (D)")
        self.no_data_button.clicked.connect(lambda: self.label(None, NO_DATA))
        flags.addWidget(self.not_sure_button)
        flags.addWidget(self.no_data_button)
        layout.addLayout(flags)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Comment (saved with the label)")
        layout.addWidget(self.comment)
        navigation = QHBoxLayout()
        for text, slot in (
            ("◀ Previous", self.previous),
            ("Next ▶", self.next),
            ("First unlabelled (U)", self.first_unlabelled),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            navigation.addWidget(button)
        layout.addLayout(navigation)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress_label)
        assess_line = QHBoxLayout()
        self.assess_button = QPushButton("Assess: areas and accuracy…")
        self.assess_button.clicked.connect(self.assess)
        assess_line.addWidget(self.assess_button)
        layout.addLayout(assess_line)
        self._enable_labelling(False)
        return box

    def _enable_labelling(self, on: bool) -> None:
        for widget in (
            self.not_sure_button,
            self.no_data_button,
            self.comment,
            self.assess_button,
            *self.class_buttons,
        ):
            widget.setEnabled(on)

    # ------------------------------------------------------------------ the sample layer
    def open_sample(self, path: str) -> QgsVectorLayer:
        """Load a sample GeoPackage into the project and label it."""
        layer = QgsVectorLayer(f"{path}|layername={LAYER}", Path(path).stem, "ogr")
        if not layer.isValid():
            raise SampleError(f"'{path}' holds no layer '{LAYER}': draw a sample with 'Draw sample…' first.")
        QgsProject.instance().addMapLayer(layer)
        self.sample_combo.setLayer(layer)
        if self.layer is not layer:
            self.set_layer(layer)
        return layer

    def _layer_chosen(self, layer) -> None:
        try:
            self.set_layer(layer if isinstance(layer, QgsVectorLayer) else None)
        except SampleError as exc:
            self.say(str(exc))

    def _layer_removed(self, layer_id: str) -> None:
        # The layer object dies with its removal: forget it rather than touch it later.
        if self.layer is not None and self.layer.id() == layer_id:
            self.sample_combo.setLayer(None)
            self.set_layer(None)

    def set_layer(self, layer: QgsVectorLayer | None) -> None:
        self.layer, self.design, self.fids, self.position = None, None, [], 0
        self._enable_labelling(False)
        if layer is None:
            self.where.setText("Choose a sample layer (drawn above, or opened from a .gpkg).")
            return
        names = layer.fields().names()
        missing = [f for f in (self.reference_field, "flag", "comment", "labelled_at", "map_class") if f not in names]
        if missing:
            raise SampleError(
                f"The layer '{layer.name()}' lacks the field(s) {', '.join(missing)} of a sample "
                "drawn by 'Draw sample…': draw one, or open its .gpkg."
            )
        self.design = design_of(file_of(layer))
        self.classes = (
            list(self.design["class_names"])
            if self.design
            else sorted({f["map_class"] for f in layer.getFeatures()} - {None, ""})
        )
        order = sorted(((f["sample_id"], f.id()) for f in layer.getFeatures()), key=lambda pair: pair[0])
        self.fids = [fid for _, fid in order]
        self.layer = layer
        self._make_class_buttons()
        self._enable_labelling(bool(self.fids))
        self.first_unlabelled()

    def _make_class_buttons(self) -> None:
        for button in self.class_buttons:
            self.class_grid.removeWidget(button)
            button.deleteLater()
        self.class_buttons = []
        for k, name in enumerate(self.classes):
            key = f"{(k + 1) % 10}" if k < 10 else ""
            button = QPushButton(f"{key}  {name}" if key else name)
            button.setToolTip(f"Label the point '{name}'" + (f" (key {key})" if key else ""))
            button.clicked.connect(lambda _=False, n=name: self.label(n))
            self.class_grid.addWidget(button, k // 3, k % 3)
            self.class_buttons.append(button)

    def feature(self, index: int | None = None) -> QgsFeature:
        return self.layer.getFeature(self.fids[self.position if index is None else index])

    def is_done(self, feature: QgsFeature) -> bool:
        return any(str(feature[name] or "").strip() not in ("", "NULL") for name in (self.reference_field, "flag"))

    # ------------------------------------------------------------------ moving around
    def go(self, index: int) -> None:
        if not self.fids:
            return
        self.position = max(0, min(index, len(self.fids) - 1))
        self.show_point()

    def next(self) -> None:
        self.go(self.position + 1)

    def previous(self) -> None:
        self.go(self.position - 1)

    def first_unlabelled(self) -> None:
        if not self.fids:
            return
        for index in range(len(self.fids)):
            if not self.is_done(self.feature(index)):
                self.go(index)
                return
        self.go(len(self.fids) - 1)
        self.say("Every point is labelled: press 'Assess' for the areas and accuracy.")

    def show_point(self) -> None:
        if self.layer is None or not self.fids:
            return
        feature = self.feature()
        done = feature[self.reference_field] or feature["flag"]
        shown = "" if self.blind.isChecked() else f" — map: <b>{feature['map_class']}</b>"
        self.where.setTextFormat(Qt.TextFormat.RichText)
        self.where.setText(
            f"Point {self.position + 1} of {len(self.fids)} (sample {feature['sample_id']}){shown}"
            f" — label: <b>{done if done and str(done) != 'NULL' else 'none yet'}</b>"
        )
        comment = feature["comment"]
        self.comment.setText("" if comment in (None, "") or str(comment) == "NULL" else str(comment))
        self.progress_label.setText(self.progress_text())
        self._centre(feature)

    def unit_side(self) -> float:
        """Side of the sampling unit in the layer's units: the map's pixel times the block size."""
        pixel = math.sqrt(float(self.design.get("pixel_area", 0))) if self.design else 0.0
        return pixel * self.unit_spin.value()

    def _centre(self, feature: QgsFeature) -> None:
        """The main canvas and every side view with a layer: on the point, at the scale, its unit drawn."""
        point = feature.geometry().asPoint()
        half = self.unit_side() / 2
        if half > 0:
            unit = QgsGeometry.fromRect(
                QgsRectangle(point.x() - half, point.y() - half, point.x() + half, point.y() + half)
            )
        else:  # no pixel size recorded: a small square mark
            unit = QgsGeometry.fromPointXY(QgsPointXY(point)).buffer(1, 1)
        scale = self.scale_spin.value()
        if self.canvas is not None:
            if self.rubber is None:
                self.rubber = unit_band(self.canvas)
            frame(self.canvas, self.rubber, unit, self.layer.crs(), scale)
        assessed = self.map_combo.currentLayer()
        for view in self.side_views:
            layer = view.layer()
            # Blind: a view of the map being assessed would show the map class.
            hidden = (
                self.blind.isChecked()
                and layer is not None
                and assessed is not None
                and file_of(layer) == file_of(assessed)
            )
            view.canvas.setVisible(layer is not None and not hidden)
            if layer is not None and not hidden:
                frame(view.canvas, view.band, unit, self.layer.crs(), scale)

    def progress_text(self) -> str:
        """n / N labelled per stratum (map class), and overall."""
        done: dict[str, list[int]] = {}
        for fid in self.fids:
            feature = self.layer.getFeature(fid)
            entry = done.setdefault(str(feature["map_class"]), [0, 0])
            entry[0] += self.is_done(feature)
            entry[1] += 1
        total = sum(n for n, _ in done.values())
        strata = (
            " · ".join(f"{name} {n}/{of}" for name, (n, of) in done.items())
            if not self.blind.isChecked()
            else "per class hidden while blind"
        )
        return f"Labelled {total}/{len(self.fids)} — {strata}"

    # ------------------------------------------------------------------ labelling
    def label(self, name: str | None, flag: str = "") -> None:
        """Save the label (or a flag) of the current point at once into the GeoPackage, then move on."""
        if self.layer is None or not self.fids:
            return
        fields = self.layer.fields()
        values = {
            fields.indexOf(self.reference_field): name if name else None,
            fields.indexOf("flag"): flag,
            fields.indexOf("comment"): self.comment.text().strip() or None,
            fields.indexOf("labelled_at"): datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # Straight through the provider: written to the file now, not kept in an edit buffer.
        if not self.layer.dataProvider().changeAttributeValues({self.fids[self.position]: values}):
            self.say(
                f"The label could not be saved into '{file_of(self.layer)}': is the file writable? "
                + "; ".join(self.layer.dataProvider().errors())
            )
            return
        self.layer.triggerRepaint()
        if self.position < len(self.fids) - 1:
            self.next()
        else:
            self.first_unlabelled()

    def keyPressEvent(self, event):  # noqa: N802 - Qt API
        key = event.key()
        if self.layer is not None and key in DIGITS and DIGITS.index(key) < len(self.classes):
            self.label(self.classes[DIGITS.index(key)])
        elif self.layer is not None and key == Qt.Key.Key_N:
            self.label(None, NOT_SURE)
        elif self.layer is not None and key == Qt.Key.Key_D:
            self.label(None, NO_DATA)
        elif key == Qt.Key.Key_Right:
            self.next()
        elif key == Qt.Key.Key_Left:
            self.previous()
        elif key == Qt.Key.Key_U:
            self.first_unlabelled()
        else:
            super().keyPressEvent(event)

    # ------------------------------------------------------------------ engine requests
    def sample_request(self, output: str, dry_run: bool) -> SampleRequest:
        layer = self.map_combo.currentLayer()
        if layer is None or layer.providerType() != "gdal":
            raise SampleError("Choose the class map (a raster file layer) to sample.")
        expected = None
        if self.expected.text().strip():
            try:
                expected = [float(v) for v in self.expected.text().replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise SampleError(
                    f"Expected user's accuracies '{self.expected.text()}': write numbers between 0 "
                    "and 1 separated by commas, one per map class."
                ) from None
        return SampleRequest(
            classes=file_of(layer),
            output=output,
            design=self.design_combo.currentText(),
            allocation=self.allocation_combo.currentText(),
            total=self.total_spin.value(),
            min_per_class=self.min_spin.value(),
            target_se=self.target_spin.value() or None,
            target_class=self.target_class.currentData(),
            expected_users_accuracy=expected,
            min_distance=self.distance_spin.value(),
            seed=self.seed_spin.value(),
            dry_run=dry_run,
        )

    def draw(self, dry_run: bool, output: str | None = None) -> None:
        try:
            if output is None:
                layer = self.map_combo.currentLayer()
                if dry_run:
                    output = str(Path(file_of(layer)).with_suffix(".sample.gpkg")) if layer else ""
                else:
                    output, _ = QFileDialog.getSaveFileName(self, "Sample points", "", "GeoPackage (*.gpkg)")
                    if not output:
                        return
            request = self.sample_request(output, dry_run)
        except SampleError as exc:
            self.say(str(exc))
            return
        self.start(
            EngineTask("OmniSat: sample sizes" if dry_run else "OmniSat: draw a sample", [request.step()], self._drawn)
        )

    def _drawn(self, task: EngineTask) -> None:
        if not self._finished(task):
            return
        result = task.results[-1]
        if result.get("dry_run"):
            target = f" (the target needs {result['target_size']})" if result.get("target_size") else ""
            self.sizes.setText(
                f"{result['samples']:g} points{target}: "
                + ", ".join(f"{name} {n:g}" for name, n in result["planned_per_class"].items())
            )
            return
        self.sizes.setText(
            f"Drew {result['samples']} points: "
            + ", ".join(f"{name} {n}" for name, n in result["samples_per_class"].items())
        )
        try:
            self.open_sample(result["output"])
        except SampleError as exc:
            self.say(str(exc))

    def assess_step(self, csv_path: str, html_path: str) -> Step:
        if self.layer is None:
            raise SampleError("Choose the sample layer to assess.")
        if self.design is None:
            raise SampleError(f"'{self.layer.name()}' records no sampling design: use a sample drawn here.")
        classes = self.map_combo.currentLayer()
        if classes is None or classes.providerType() != "gdal":
            raise SampleError("Choose the class map the sample was drawn from (Class map, above).")
        return Step(
            "assess",
            {
                "classes": file_of(classes),
                "sample": file_of(self.layer),
                "output": csv_path,
                "html": html_path,
                "reference_field": self.reference_field,
            },
            (csv_path, html_path),
            "Assessing",
        )

    def assess(self, csv_path: str | None = None) -> None:
        try:
            if csv_path is None:
                csv_path, _ = QFileDialog.getSaveFileName(self, "Area and accuracy table", "", "CSV (*.csv)")
                if not csv_path:
                    return
            step = self.assess_step(csv_path, str(Path(csv_path).with_suffix(".html")))
        except SampleError as exc:
            self.say(str(exc))
            return
        self.start(EngineTask("OmniSat: assess", [step], self._assessed))

    def _assessed(self, task: EngineTask) -> None:
        if not self._finished(task):
            return
        result = task.results[-1]
        response = result["response"]
        overall = result["overall_accuracy"]
        se = result.get("overall_accuracy_se")
        link = Path(result["html"]).as_uri()
        self.status.setText(
            f"Overall accuracy {overall:.3f} ± {'undefined' if se is None else f'{se:.3f}'} (SE) from "
            f"{response['labelled']} of {response['total']} points. "
            f"<a href=\"{link}\">Open the report</a>"
        )

    def start(self, task: EngineTask) -> None:
        if self.task is not None:
            self.say("A run is in progress: wait for it to end.")
            return
        self.task = task
        for button in (self.preview_button, self.draw_button, self.assess_button):
            button.setEnabled(False)
        QgsApplication.taskManager().addTask(task)

    def _finished(self, task: EngineTask) -> bool:
        self.task = None
        for button in (self.preview_button, self.draw_button):
            button.setEnabled(True)
        self.assess_button.setEnabled(self.layer is not None)
        if task.error or task.cancelled_by_user:
            self.say(task.error or "Cancelled.")
            return False
        return True

    def say(self, text: str) -> None:
        self.messages.append(text)
        self.status.setText(text)
