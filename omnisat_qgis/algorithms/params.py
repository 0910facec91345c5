"""Processing parameters declared as data, mapped one to one onto engine parameter names.

Each algorithm lists ``Param`` rows; the base class builds the QGIS parameters from
them and turns the values the user gave into the engine's parameter object, so no
algorithm repeats the plumbing. ``key`` is the engine parameter, dotted for nested
job keys (``job.outputs.classes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsMapLayer,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProcessingUtils,
    QgsProperty,
    QgsRasterLayer,
    QgsVectorLayer,
)

from omnisat_qgis.model_catalog import HUMAN_LABELS, catalog_row, catalog_rows

# kinds whose QGIS parameter is an output the engine writes
OUTPUT_KINDS = ("raster_out", "file_out")

# The embedding levels, as an analyst needs them explained (the algorithms' help and tooltips).
LEVELS_HELP = (
    "which vectors the encoder writes or the probe reads. auto: the level the job names, or the one the embeddings "
    "raster was written at. patch: one vector per model patch (e.g. 10 m) after the sensors are fused: the "
    "default, what the dock uses. local: per patch, each sensor's encoder features before fusion: they follow "
    "each patch's own pixels (sharper field edges, more bands). both: patch and local side by side. dense: (AnySat "
    "models) one vector per sub-patch of the finest sensor; (UniverSat models) one per output cell, at the output "
    "resolution: a finer map, larger files. tile: one vector per "
    "window (e.g. 60 m), windows edge to edge: to compare whole scenes, not to map fields. A probe must be "
    "applied at the level it was fitted on."
)
# What the technical settings do, said once for every algorithm that has them.
COMMON_HELP = {
    "JOB": "a JSON job (see the README) holding the model, the layers, masks and band selections; the settings "
    "given here override it",
    "PATCH_SIZE": "the model patch in metres; leave empty for the model's own (changing it changes what the "
    "encoder sees)",
    "TILE_SIZE": "side of the windows the model sees at once; lower it (and the batch size) when the engine runs "
    "out of memory",
    "OVERLAP": "how much neighbouring windows overlap, so that window edges do not show in the map",
    "BATCH_SIZE": "windows per model call: lower it when the engine runs out of memory, raise it on a large GPU",
    "DEVICE": "auto uses a CUDA GPU when the engine finds one, else the CPU",
    "PRECISION": "auto: bf16 on GPUs that support it, else fp32; fp32 is the reference, bf16 halves the memory",
    "EMBEDDINGS_DTYPE": "float16 halves the file size; the probes read both",
    "EMBEDDINGS_LEVEL": LEVELS_HELP,
    "FEATURES": "what the classifier sees: the model's embeddings, the raw bands (raw), their per-date "
    "statistics (stats), spectral indices (indices), or combinations joined by + (embeddings+raw); "
    "the input features need a job (the layers)",
    "MIN_COVERAGE": "a polygon labels a cell only when it covers at least this share of it (0.5: half)",
    "FOLDS": "the labels are split into this many spatial blocks; each is held out once to measure the accuracy",
    "SEED": "the same seed gives the same folds and the same probe",
    "LEARNING_RATE": "step size of the pretraining; the default is the one AnySat was pretrained with",
    "CHECKPOINT_EVERY": "the model is saved this often, so that a stopped run resumes where it was",
}


@dataclass(frozen=True)
class Param:
    name: str
    key: str
    kind: str  # raster, rasters, band, vector, field, file, string, int, float, bool, enum, extent, dates,
    #            texts (comma-separated list), model (a model of the catalog, by name), raster_out, file_out
    description: str
    default: Any = None
    optional: bool = False
    options: tuple[str, ...] = ()
    file_filter: str = ""
    minimum: float | None = None
    # vector rows: the engine key that receives a GeoPackage layer name ("file.gpkg|layername=x")
    layer_key: str = ""
    # band / field rows: the raster / vector parameter whose bands / fields are offered
    parent: str = ""
    # technical settings an analyst rarely changes: under "Advanced parameters"
    advanced: bool = False
    # outputs: the renderer QGIS gives the layer (a key of omnisat_qgis.styling.STYLERS, or "embeddings")
    style: str = ""
    # shown in the algorithm's help, in the analyst's words
    help: str = ""
    # optional outputs: whether the dialog writes them unless the analyst unticks them
    create_by_default: bool = False

    @property
    def help_text(self) -> str:
        """The row's help, else the common explanation of a technical setting."""
        return self.help or COMMON_HELP.get(self.name, "")

    def definition(self):
        """The QgsProcessingParameter* for this row (flagged advanced when it is)."""
        parameter = self._definition()
        if self.advanced:
            parameter.setFlags(parameter.flags() | Qgis.ProcessingParameterFlag.Advanced)
        if self.help_text:
            parameter.setHelp(self.help_text)
        return parameter

    def _definition(self):
        kind, name, text, optional = self.kind, self.name, self.description, self.optional
        if kind == "raster":
            return QgsProcessingParameterRasterLayer(name, text, optional=optional)
        if kind == "rasters":
            return QgsProcessingParameterMultipleLayers(name, text, Qgis.ProcessingSourceType.Raster, optional=optional)
        if kind == "vector":
            return QgsProcessingParameterVectorLayer(name, text, [Qgis.ProcessingSourceType.Vector], optional=optional)
        if kind == "field":
            return QgsProcessingParameterField(name, text, self.default, self.parent, optional=optional)
        if kind == "file":
            return QgsProcessingParameterFile(name, text, fileFilter=self.file_filter, optional=optional)
        if kind in ("string", "dates", "texts"):
            return QgsProcessingParameterString(name, text, defaultValue=self.default, optional=optional)
        if kind in ("int", "float"):
            number = (
                Qgis.ProcessingNumberParameterType.Integer
                if kind == "int"
                else Qgis.ProcessingNumberParameterType.Double
            )
            parameter = QgsProcessingParameterNumber(name, text, number, defaultValue=self.default, optional=optional)
            if self.minimum is not None:
                parameter.setMinimum(self.minimum)
            return parameter
        if kind == "band":
            return QgsProcessingParameterBand(name, text, self.default, self.parent, optional=optional)
        if kind == "bool":
            return QgsProcessingParameterBoolean(name, text, defaultValue=bool(self.default), optional=optional)
        if kind == "enum":
            # Static strings: scripts and batch files say "cpu", not an index that shifts
            # when an option is added.
            return QgsProcessingParameterEnum(
                name,
                text,
                options=list(self.options),
                allowMultiple=False,
                defaultValue=self.default or self.options[0],
                optional=optional,
                usesStaticStrings=True,
            )
        if kind == "model":
            # The catalog's names, as static strings: scripts say "anysat-tiny", not an index. In the dock's
            # order (installed, then downloadable), the label saying which is which.
            names, installed = picker_order(catalog_rows())
            waiting = [n for n in names if n not in installed]
            text = f"{text} (installed: {', '.join(installed) or 'none'}" + (
                f"; not downloaded yet: {', '.join(waiting)}, see 'Download an official model')" if waiting else ")"
            )
            return QgsProcessingParameterEnum(
                name,
                text,
                options=names,
                allowMultiple=False,
                defaultValue=self.default,
                optional=optional,
                usesStaticStrings=True,
            )
        if kind == "sensor":
            # Every sensor name a model may have; the chosen model's own are checked before anything runs.
            return QgsProcessingParameterEnum(
                name,
                text,
                options=list(known_sensors()),
                allowMultiple=False,
                defaultValue=self.default,
                optional=optional,
                usesStaticStrings=True,
            )
        if kind == "extent":
            return QgsProcessingParameterExtent(name, text, optional=optional)
        if kind == "raster_out":
            return QgsProcessingParameterRasterDestination(
                name, text, optional=optional, createByDefault=not optional or self.create_by_default
            )
        if kind == "file_out":
            return QgsProcessingParameterFileDestination(
                name,
                text,
                fileFilter=self.file_filter,
                optional=optional,
                createByDefault=not optional or self.create_by_default,
            )
        raise ValueError(f"unknown parameter kind {kind!r}")


@dataclass(frozen=True)
class ResultRow:
    """A non-file result (a figure, a note) taken from the engine's result under ``key``."""

    name: str
    key: str
    kind: str  # number or string
    description: str

    def definition(self):
        output = QgsProcessingOutputNumber if self.kind == "number" else QgsProcessingOutputString
        return output(self.name, self.description)

    def value(self, result: dict[str, Any]) -> Any:
        value = result.get(self.key)
        if self.kind == "string" and isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return value


def _layer_or_path(value: Any, context, name: str, layer_type) -> str | QgsMapLayer:
    """A file path given as text is used as is: loading it as a layer would make GDAL
    write statistics beside the user's file, and inputs are never modified."""
    if isinstance(value, QgsProperty):
        value = value.valueAsString(context.expressionContext())
    if isinstance(value, QgsMapLayer):
        return value
    if isinstance(value, str) and value:
        layer = QgsProcessingUtils.mapLayerFromString(value, context, False)
        if layer is not None:
            return layer
        path = value.split("|")[0]
        if not Path(path).exists():
            raise QgsProcessingException(f"{name}: '{path}' does not exist: check the path.")
        return value
    raise QgsProcessingException(f"{name}: no layer was given.")


def layer_source(value: Any, context, name: str, layer_type=QgsRasterLayer) -> str:
    found = _layer_or_path(value, context, name, layer_type)
    if isinstance(found, str):
        return found
    if not isinstance(found, layer_type) or found.providerType() not in ("gdal", "ogr"):
        raise QgsProcessingException(
            f"{name}: the layer '{found.name()}' is not a file layer ({found.providerType()}); "
            "save it to a file first (Export > Save As)."
        )
    return found.source()


def value_for_engine(algorithm, param: Param, parameters: dict, context) -> Any:
    """The engine value of one parameter, or None when the user left it empty."""
    name, kind = param.name, param.kind
    raw = parameters.get(name)
    if kind in ("raster", "vector"):
        if raw in (None, ""):
            return None
        source = layer_source(raw, context, name, QgsRasterLayer if kind == "raster" else QgsVectorLayer)
        return source.split("|")[0] if kind == "raster" else source
    if kind == "rasters":
        if not raw:
            return None
        values = raw if isinstance(raw, (list, tuple)) else str(raw).split(";")
        return [layer_source(v, context, name).split("|")[0] for v in values]
    if kind == "file":
        return algorithm.parameterAsFile(parameters, name, context) or None
    if kind == "string":
        return algorithm.parameterAsString(parameters, name, context) or None
    if kind in ("dates", "texts"):  # comma-separated text -> a list
        text = algorithm.parameterAsString(parameters, name, context)
        return [d.strip() for d in text.replace(";", ",").split(",") if d.strip()] or None
    if kind == "field":
        return algorithm.parameterAsString(parameters, name, context) or None
    if kind == "band":
        return algorithm.parameterAsInt(parameters, name, context)
    if kind in ("int", "float"):
        if raw in (None, "") and param.optional:
            return None
        getter = algorithm.parameterAsInt if kind == "int" else algorithm.parameterAsDouble
        return getter(parameters, name, context)
    if kind == "bool":
        return algorithm.parameterAsBool(parameters, name, context)
    if kind in ("enum", "sensor"):
        return algorithm.parameterAsEnumString(parameters, name, context) or None
    if kind == "model":
        chosen = algorithm.parameterAsEnumString(parameters, name, context)
        return model_path(chosen, name) if chosen else None
    if kind == "extent":
        if raw in (None, ""):
            return None
        rect = algorithm.parameterAsExtent(parameters, name, context)
        if rect.isNull() or rect.isEmpty():
            return None
        crs = algorithm.parameterAsExtentCrs(parameters, name, context)
        return {
            "bounds": [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()],
            "crs": crs.authid() or crs.toWkt(),
        }
    if kind == "raster_out":
        return algorithm.parameterAsOutputLayer(parameters, name, context) or None
    if kind == "file_out":
        return algorithm.parameterAsFileOutput(parameters, name, context) or None
    raise ValueError(f"unknown parameter kind {kind!r}")


def picker_order(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(every name, the installed ones) in the dock's order: shipped, the models folder, then downloadable."""
    from omnisat_qgis import settings
    from omnisat_qgis.model_catalog import picker_entries

    order = [e.name for e in picker_entries(settings.models_folder())]
    rank = {name: index for index, name in enumerate(order)}
    installed = [r["name"] for r in rows if r.get("status") == "installed"]
    names = sorted((r["name"] for r in rows), key=lambda n: (n not in installed, rank.get(n, len(rank)), n))
    return names, sorted(installed, key=lambda n: (rank.get(n, len(rank)), n))


def known_sensors() -> dict[str, str]:
    """Sensor names of the catalog's models, then every name the plugin knows ({name: what an analyst reads})."""
    names = {m: HUMAN_LABELS.get(m, m) for row in catalog_rows() for m in row.get("modalities", {})}
    return names | {m: label for m, label in HUMAN_LABELS.items() if m not in names}


def model_path(name: str, parameter: str = "MODEL") -> str:
    """The checkpoint of the catalog's model ``name``; a clear error for one not downloaded yet."""
    row = catalog_row(name)
    if row is None:
        known = ", ".join(r["name"] for r in catalog_rows())
        raise QgsProcessingException(f"{parameter}: no model {name!r} in the catalog (known: {known}).")
    if row.get("status") != "installed" or not row.get("path"):
        raise QgsProcessingException(
            f"{parameter}: {name} is not downloaded yet: run 'Download an official model' (OmniSat > Engine) first."
        )
    return row["path"]


def model_rows(
    key: str, file_description: str = "…or a model file (checkpoint, or a probe to classify with)", help_text: str = ""
) -> tuple[Param, Param]:
    """A model of the catalog (MODEL) or any checkpoint file (MODEL_FILE), both onto the engine key ``key``."""
    return (
        Param(
            "MODEL",
            key,
            "model",
            "Model",
            optional=True,
            help=help_text
            or (
                "the models shipped with the plugin, those you downloaded or trained ('Learn this area'), and the "
                "official ones you can download; a model without classes needs a probe (fit one on your labels)"
            ),
        ),
        Param("MODEL_FILE", key, "file", file_description, optional=True, file_filter="Model (*.safetensors)"),
    )


def set_nested(target: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for part in path:
        target = target.setdefault(part, {})
    target[last] = value
