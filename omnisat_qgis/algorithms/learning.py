"""``omnisat:learnarea``: self-supervised pretraining of a model on the analyst's own layers."""

from __future__ import annotations

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.mapping import add_modalities, check_sensors, modality_rows
from omnisat_qgis.algorithms.params import Param, ResultRow, model_rows
from omnisat_qgis.contract import contract
from omnisat_qgis.learn_area import LearnAreaRequest, RequestError

# Rows passed to the engine as they are (advanced settings), by their engine names.
TECHNICAL = ("batch_size", "learning_rate", "device", "checkpoint_every", "seed")


class LearnArea(EngineAlgorithm):
    operation = "learn-area"
    display = "Learn this area (pretrain a model on my layers)"
    group_name = "Models"
    help_text = (
        "Teaches a model your area without any label: it keeps training the model's own self-supervised task "
        "on windows of your layers, for the time you give (10 minutes by default; much more helps, on a GPU "
        "especially). Progress shows the step, the training loss (it should go down) and the speed. Cancel keeps "
        "the last checkpoint (at most about a minute old): run again with the same name to continue. The new "
        "model goes into your models folder and appears in every model list, with where it came from (the "
        "starting model, your layers, the steps). Give a labels layer to see whether it helped: a probe is "
        "fitted on the starting model's and on the new model's embeddings with the same spatial folds, and both "
        "accuracies are reported."
    )
    params = (
        *model_rows(
            "model",
            "…or the starting model file",
            "the model to start from: a shipped or downloaded model (the official AnySat one is the strongest start)",
        ),
        *modality_rows(),
        Param("EXTENT", "extent", "extent", "Area to learn (default: where all your layers overlap)", optional=True),
        Param(
            "NAME",
            "name",
            "string",
            "Name of the new model",
            default="my-area",
            help="the file <name>.safetensors in the models folder; the same name again resumes its training",
        ),
        Param("MINUTES", "minutes", "float", "Time budget in minutes", default=10.0, minimum=0),
        Param("STEPS", "steps", "int", "Training steps (0: as many as the time budget allows)", default=0, minimum=0),
        Param("RESUME", "resume", "bool", "Continue the last run of this name", default=True),
        Param("LABELS", "labels", "vector", "Labels to measure the gain (optional)", optional=True, layer_key="layer"),
        Param("CLASS_FIELD", "class_field", "field", "Class field", default="class", parent="LABELS", optional=True),
        Param(
            "IGNORE_VALUES", "ignore_values", "texts", "Class values to ignore (comma-separated, e.g. 0)", optional=True
        ),
        Param(
            "REPORT",
            "report",
            "file_out",
            "Report (loss curve, accuracy before and after)",
            file_filter="HTML (*.html)",
            optional=True,
        ),
        Param(
            "TILE_SIZE",
            "tile_size",
            "float",
            "Window size in metres (default: the model's)",
            optional=True,
            advanced=True,
        ),
        Param(
            "BATCH_SIZE",
            "batch_size",
            "int",
            "Windows per training step",
            default=4,
            minimum=1,
            advanced=True,
            help="lower it when the engine runs out of memory",
        ),
        Param("LEARNING_RATE", "learning_rate", "float", "Learning rate", default=5e-5, minimum=0, advanced=True),
        Param("DEVICE", "device", "enum", "Device", default="auto", options=contract.DEVICES, advanced=True),
        Param(
            "CHECKPOINT_EVERY",
            "checkpoint_every",
            "int",
            "Checkpoint every N steps (and every minute)",
            default=25,
            minimum=1,
            advanced=True,
        ),
        Param("SEED", "seed", "int", "Random seed", default=0, advanced=True),
    )
    results = (
        ResultRow("OUTPUT", "output", "string", "The new model"),
        ResultRow("TOTAL_STEPS", "steps", "number", "Training steps of the model, all runs"),
        ResultRow("FINAL_LOSS", "final_loss", "number", "Training loss at the last step"),
        ResultRow("SAMPLES_PER_S", "samples_per_s", "number", "Windows per second"),
        ResultRow("MACRO_F1_BEFORE", "macro_f1_before", "number", "Probe macro-F1 on the starting model (labels)"),
        ResultRow("MACRO_F1_AFTER", "macro_f1_after", "number", "Probe macro-F1 on the new model (same folds)"),
    )

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        # The sensors first, as for mapping: a name the model lacks is refused with the model's list.
        ok, message = check_sensors(self, self.model_as_file(parameters), context)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def engine_params(self, parameters, context, feedback):
        engine = super().engine_params(parameters, context, feedback)
        if not engine.get("model"):
            raise QgsProcessingException("MODEL: choose the model to start from.")
        modalities = add_modalities({}, engine.get("slots", {})).get("modalities", {})
        request = LearnAreaRequest(
            model=engine["model"],
            layers={n: m["files"] for n, m in modalities.items()},
            dates={n: m["dates"] for n, m in modalities.items() if "dates" in m},
            name=engine.get("name") or "",
            extent=engine.get("extent"),
            tile_size=engine.get("tile_size"),
            minutes=engine["minutes"],
            steps=engine["steps"],
            resume=engine["resume"],
            labels=engine.get("labels"),
            class_field=engine.get("class_field") or "class",
            layer=engine.get("layer"),
            ignore_values=tuple(engine.get("ignore_values") or ()),
            report=engine.get("report"),
            technical={k: engine[k] for k in TECHNICAL if engine.get(k) is not None},
        )
        try:
            return request.engine_params()
        except RequestError as exc:
            raise QgsProcessingException(str(exc)) from None
