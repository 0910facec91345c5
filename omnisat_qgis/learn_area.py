""" "Learn this area" as a request: what the Processing algorithm ``omnisat:learnarea`` and the dock
both send to the engine's ``learn-area`` operation (training/learn_area.py).

The new model goes into the models folder (setting 'OmniSat models folder'), so every model
picker lists it once written; its training checkpoints go beside it (``<name>-run``), where a
cancelled or finished run is resumed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnisat_qgis import settings

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RequestError(ValueError):
    """A request that cannot run; the message names the setting and the fix."""


@dataclass(frozen=True)
class LearnAreaRequest:
    model: str  # the starting checkpoint (a path)
    layers: dict[str, list[str]]  # modality name -> its layers' files (one per date for a series)
    name: str  # the new model's name in the catalog
    dates: dict[str, list[str]] = field(default_factory=dict)
    extent: dict[str, Any] | None = None  # {"bounds": [...], "crs": "EPSG:..."}
    tile_size: float | None = None
    minutes: float = 10.0
    steps: int = 0
    resume: bool = True
    labels: str | None = None
    class_field: str = "class"
    layer: str | None = None
    ignore_values: tuple[str, ...] = ()
    report: str | None = None
    technical: dict[str, Any] = field(
        default_factory=dict
    )  # batch_size, learning_rate, device, ... as the engine names them
    # per modality: further job keys ("bands", "scale") the dock's band table and conversion set
    reading: dict[str, dict[str, Any]] = field(default_factory=dict)

    def output(self) -> Path:
        return settings.models_folder() / f"{self.name}.safetensors"

    def engine_params(self) -> dict[str, Any]:
        """The learn-area operation's parameters (the models folder is created)."""
        if not NAME_PATTERN.match(self.name or ""):
            raise RequestError(f"NAME: '{self.name}' cannot name a model file: use letters, digits, '-', '_' or '.'.")
        if not self.layers:
            raise RequestError("Give at least one sensor's layers (MODALITY_1 and LAYERS_1).")
        if self.minutes <= 0 and self.steps <= 0:
            raise RequestError("MINUTES and STEPS are both 0: give a time budget or a number of steps.")
        modalities = {
            name: {"files": files}
            | ({"dates": self.dates[name]} if self.dates.get(name) else {})
            | self.reading.get(name, {})
            for name, files in self.layers.items()
        }
        # The job format asks for an output; learn-area writes none of the job's.
        unused = {"embeddings": str(self.output().with_name(f"{self.name}-run") / "not-written.tif")}
        job: dict[str, Any] = {"model": self.model, "modalities": modalities, "outputs": unused}
        if self.extent:
            job["extent"] = self.extent
        if self.tile_size:
            job["tile_size"] = self.tile_size
        output = self.output()
        output.parent.mkdir(parents=True, exist_ok=True)
        params = {
            "job": job,
            "output": str(output),
            "minutes": self.minutes,
            "steps": self.steps,
            "resume": self.resume,
            **self.technical,
        }
        if self.labels:
            params.update(labels=self.labels, class_field=self.class_field, ignore_values=list(self.ignore_values))
            if self.layer:
                params["layer"] = self.layer
        if self.report:
            params["report"] = self.report
        return params

    def step(self):
        """The dock's background job (omnisat_qgis.gui.engine_task.Step)."""
        from omnisat_qgis.gui.engine_task import Step

        params = self.engine_params()
        return Step(
            "learn-area",
            params,
            tuple(p for p in (params["output"], self.report) if p),
            f"Learning the area ({self.name})",
        )
