"""Steps the real-QGIS scenarios share (startup.py, assess_startup.py), imported inside QGIS.

QGIS runs a ``--code`` script without ``__file__``: the scripts put this folder
($OMNISAT_GUI_SCRIPTS, set by run.sh and assess_run.sh) at the end of ``sys.path``,
after the plugin folder, so that the plugin is still the installed one.
"""

from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsVectorLayer


def labels_from_polygons(dock, inside, polygons_path: str, per_class: dict[str, int], path: str) -> tuple:
    """Points inside eo-learn land-cover polygons and inside ``inside`` (the polygons reach beyond the
    Sentinel-2 scene), one per polygon, at most ``per_class[name]`` per class, the largest polygons
    first: what an analyst clicks, one point per field. Returns (labels layer, points per class)."""
    polygons = QgsVectorLayer(polygons_path, "lulc", "ogr")
    dock.class_table.setRowCount(0)
    for name in per_class:
        dock.add_class(name)
    layer = dock.new_labels_layer(path)
    area = QgsGeometry.fromRect(inside)
    taken = dict.fromkeys(per_class, 0)
    for polygon in sorted(polygons.getFeatures(), key=lambda f: -f.geometry().intersection(area).area()):
        name = polygon["LULC_NAME"]
        point = polygon.geometry().intersection(area).pointOnSurface()
        if name in taken and taken[name] < per_class[name] and not point.isEmpty():
            feature = QgsFeature(layer.fields())
            feature.setGeometry(point)
            feature["class"] = name
            layer.addFeature(feature)
            taken[name] += 1
    return layer, taken


def group_of_last_map(dock) -> str:
    text = next(m for m in reversed(dock.messages) if m.startswith("Mapped"))
    return text.split("group '")[1].rstrip("'.")


def classes_layer(group_name: str):
    """The 'Classes' layer the dock added in the group of a map run."""
    group = QgsProject.instance().layerTreeRoot().findGroup(group_name)
    return next(n.layer() for n in group.findLayers() if n.layer().name() == "Classes")
