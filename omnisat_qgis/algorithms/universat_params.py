"""Processing parameters of models that read bands by wavelength (UniverSat): the output resolution,
and a sensor the model does not list, described by its bands (omnisat_qgis.other_sensor).

Per sensor slot i of the job algorithms: WAVELENGTHS_i (each layer band's centre wavelength in nm or
its polarisation, comma-separated; an empty item leaves that band out) and PIXEL_SIZE_i; the slot
then goes to the job as ``other<i>`` with a ``"sensor"`` entry. Both are advanced (technical); the
output resolution (RESOLUTION, metres per output cell) is not. Every value is checked before the
worker starts, with the message naming the parameter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingException, QgsRasterLayer

from omnisat_qgis.algorithms.params import Param
from omnisat_qgis.contract import contract
from omnisat_qgis.model_catalog import CatalogError, catalog_row, model_info, read_header
from omnisat_qgis.other_sensor import SensorError, resolution_problem, sensor_entry

RESOLUTION_ROW = Param(
    "RESOLUTION",
    "job.resolution",
    "float",
    "Output resolution in metres per cell (UniverSat models; default: the finest input's pixel size)",
    optional=True,
    help="UniverSat maps at the resolution you choose, from one pass of the model: 10 gives one class (and, at "
    "the dense embedding level, one vector) per 10 m cell. It must divide the model's patch (40 m) and cannot be "
    "finer than the finest input's pixels. Other models map at their own patch grid: leave it empty.",
)


def other_sensor_rows(slots: int) -> tuple[Param, ...]:
    rows = []
    for i in range(1, slots + 1):
        rows += [
            Param(
                f"WAVELENGTHS_{i}",
                f"slots.{i}.wavelengths",
                "string",
                f"Sensor {i}: another sensor's band wavelengths (nm, or VV / VH / HH / HV; comma-separated)",
                optional=True,
                advanced=True,
                help="for a sensor the model does not list (UniverSat models only): one item per band of the "
                f"layers in LAYERS_{i}, in order, e.g. 490,560,665,842; an empty item leaves that band out. "
                f"Leave 'Sensor {i}' empty: the sensor is called other{i} in the job",
            ),
            Param(
                f"PIXEL_SIZE_{i}",
                f"slots.{i}.pixel_size",
                "float",
                f"Sensor {i}: another sensor's pixel size in metres",
                optional=True,
                advanced=True,
                help=f"the pixel size (ground sampling distance) of the sensor described by WAVELENGTHS_{i}",
            ),
        ]
    return tuple(rows)


def describe_other(index: int, slot: dict[str, Any], entry: dict[str, Any]) -> str:
    """Add the described sensor to the job ``entry`` of slot ``index``; its name in the job."""
    texts = str(slot["wavelengths"]).replace(";", ",").split(",")
    try:
        sensor, bands = sensor_entry(
            texts,
            slot.get("pixel_size"),
            series=len(entry["files"]) > 1 or bool(slot.get("dates")),
            where=f"WAVELENGTHS_{index} / PIXEL_SIZE_{index}",
        )
    except SensorError as exc:
        raise QgsProcessingException(str(exc)) from None
    entry["sensor"] = sensor
    # explicit: the layers may hold more bands than the items given
    entry["bands"] = bands or list(range(1, len(texts) + 1))
    return f"other{index}"


def model_architecture(algorithm, parameters, context) -> tuple[str, float] | None:
    """(architecture, patch size in metres) of the chosen model; a probe file stands for its encoder. None when
    it cannot be told (no model chosen, a downloadable one, a probe whose encoder file is gone)."""
    chosen = algorithm.parameterAsEnumString(parameters, "MODEL", context) if "MODEL" in parameters else ""
    if chosen:
        row = catalog_row(chosen)
        path = row.get("path") if row else None
    else:
        path = algorithm.parameterAsFile(parameters, "MODEL_FILE", context) or None
    if not path or not Path(path).is_file():
        return None
    if read_header(Path(path)).get("format") == contract.PROBE_FORMAT:
        encoder = json.loads(read_header(Path(path)).get("probe") or "{}").get("encoder", {})
        path = encoder.get("checkpoint")
        if not path or not Path(path).is_file():
            return None
    info = model_info(path)
    return info.architecture, info.patch_size_m


def finest_input(algorithm, parameters, context, slots: int) -> float | None:
    sizes = []
    for i in range(1, slots + 1):
        for layer in algorithm.parameterAsLayerList(parameters, f"LAYERS_{i}", context) or []:
            if isinstance(layer, QgsRasterLayer) and not layer.crs().isGeographic():
                sizes.append(layer.rasterUnitsPerPixelX())
    return min(sizes) if sizes else None


def check_universat(algorithm, parameters, context, slots: int) -> tuple[bool, str]:
    """RESOLUTION and the described sensors suit the chosen model, before the worker starts."""
    try:
        found = model_architecture(algorithm, parameters, context)
    except CatalogError as exc:
        return False, f"MODEL_FILE: {exc}"
    resolution = parameters.get("RESOLUTION")
    if resolution not in (None, "") and found is not None:
        architecture, patch = found
        given = algorithm.parameterAsDouble(parameters, "RESOLUTION", context)
        problem = resolution_problem(
            given, finest_input(algorithm, parameters, context, slots), algorithm_patch(parameters, patch), architecture
        )
        if problem:
            return False, f"RESOLUTION: {problem}"
    for i in range(1, slots + 1):
        if not algorithm.parameterAsString(parameters, f"WAVELENGTHS_{i}", context).strip():
            continue
        if found is not None and found[0] != "universat":
            return False, (
                f"WAVELENGTHS_{i}: a sensor described by its wavelengths is read only by UniverSat models; this "
                f"model ({found[0]}) reads its own sensors: choose one of them in 'Sensor {i}', or a universat model."
            )
        if algorithm.parameterAsString(parameters, f"MODALITY_{i}", context).strip():
            return False, (
                f"MODALITY_{i}: leave it empty when WAVELENGTHS_{i} describes the sensor (it is called other{i})."
            )
        if parameters.get(f"PIXEL_SIZE_{i}") in (None, ""):
            return False, f"PIXEL_SIZE_{i}: give the pixel size in metres of the sensor WAVELENGTHS_{i} describes."
        try:
            texts = algorithm.parameterAsString(parameters, f"WAVELENGTHS_{i}", context).replace(";", ",").split(",")
            sensor_entry(texts, algorithm.parameterAsDouble(parameters, f"PIXEL_SIZE_{i}", context), False, "")
        except SensorError as exc:
            return False, f"WAVELENGTHS_{i}{exc}"
    return True, ""


def algorithm_patch(parameters: dict, default: float) -> float:
    """The patch the run uses: PATCH_SIZE when given, else the model's."""
    value = parameters.get("PATCH_SIZE")
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
