"""The model call of a mapping run: a batch of windows in, the results of its levels out.

Windows are grouped by the modalities they see, so a window where one sensor has no data
is encoded from the others instead of from filled-in means. Each call returns the class
probabilities of the head (at the head's level) and the embeddings (at the job's level),
packed by their level (engine.mapping.levels) into two streams: per patch, channels last,
and per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from engine.errors import EngineError
from engine.mapping.plan import Plan
from engine.mapping.read import WindowBatch
from engine.runtime.precision import autocast_context, keep_weights_in, to_device
from engine.runtime.progress import report_within


@dataclass
class Results:
    """Per window: (B, channels, Gh, Gw) float32 on the patch stream (class probabilities, then
    embeddings) and (B, channels) on the tile stream; None where the run writes nothing there."""

    cells: np.ndarray | None = None
    tiles: np.ndarray | None = None


class LayerTicks:
    """Progress inside a forward pass (report_within), for models whose one batch takes many
    seconds: the model's linear layers count their calls, and the largest count of a forward so
    far is the whole of the next one. Before any forward is counted, the number of linear layers
    stands in (each runs at least once), capped at 90%. A cancel (SIGTERM) lands between two layers."""

    FIRST_CAP = 0.9

    def __init__(self, model: torch.nn.Module):
        layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        self.calls, self.whole, self.layers = 0, 0, max(len(layers), 1)
        self.handles = [m.register_forward_hook(self._tick) for m in layers]

    def _tick(self, *_) -> None:
        self.calls += 1
        if self.whole:
            report_within(min(self.calls / self.whole, 1.0))
        else:
            report_within(min(self.calls / self.layers, self.FIRST_CAP))

    def start(self) -> None:
        self.calls = 0

    def end(self) -> None:
        self.whole = max(self.whole, self.calls)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class ModelCall:
    """The model (and head) of a run, on the plan's device, at the plan's precision. ``close``
    removes the progress hooks (LayerTicks) from the model."""

    def __init__(self, plan: Plan, model, head=None):
        self.plan = plan
        # bf16: the matmul weights cast once here (in place: the model serves this precision from now on)
        self.model = keep_weights_in(model.to(plan.device).eval(), plan.dtype)
        self.head = head.to(plan.device).eval() if plan.outputs.head_level is not None else None
        self.dense = plan.geometry.dense.modality if plan.geometry.dense is not None else None
        self.ticks = LayerTicks(self.model)

    def close(self) -> None:
        self.ticks.close()

    def __call__(self, batch: WindowBatch) -> Results:
        out = Results()
        self.ticks.start()
        for names, index in batch.groups().items():
            part = self._forward(
                {n: batch.inputs[n][index] for n in names},
                {n: batch.dates[n][index] for n in names if n in batch.dates},
                {n: batch.date_mask[n][index] for n in names if n in batch.date_mask},
                batch.valid.shape[1:],
            )
            for key in ("cells", "tiles"):
                values = getattr(part, key)
                if values is None:
                    continue
                if getattr(out, key) is None:
                    setattr(out, key, np.empty((len(batch.windows), *values.shape[1:]), np.float32))
                getattr(out, key)[index] = values
        self.ticks.end()
        return out

    def _forward(self, inputs, dates, masks, grid: tuple[int, int]) -> Results:
        device, outputs = self.plan.device, self.plan.outputs
        inputs = {n: to_device(torch.from_numpy(np.ascontiguousarray(x)), device) for n, x in inputs.items()}
        dates = {n: to_device(torch.from_numpy(np.array(d)), device) for n, d in dates.items()}
        masks = {n: to_device(torch.from_numpy(np.ascontiguousarray(m)), device) for n, m in masks.items()}
        with torch.inference_mode(), autocast_context(device, self.plan.dtype):
            features = self.model.features(
                inputs, dates, masks, patch_size_m=self.plan.geometry.patch_size_m, dense=self.dense
            )
            if tuple(features.patch.shape[1:3]) != tuple(grid):
                raise EngineError(
                    f"The model returned a {features.patch.shape[1]} x {features.patch.shape[2]} patch grid for a "
                    f"{grid[0]} x {grid[1]}-patch window: the job's patch_size does not match the model's; "
                    "remove it or set the model's."
                )
            streams: dict[str, list[torch.Tensor]] = {"patch": [], "tile": []}
            if self.head is not None:
                lv = outputs.head_level
                probs = self.head.probabilities(self.head(lv.select(features)).float())
                if self.head.class_axis == 1:  # segmentation heads give (B, K, H, W)
                    probs = rearrange(probs, "b k h w -> b h w k")
                streams[lv.stream].append(lv.pack(probs, self.plan.geometry))
            if outputs.embeddings_level is not None:
                lv = outputs.embeddings_level
                streams[lv.stream].append(lv.pack(lv.select(features).float(), self.plan.geometry))
            cells, tiles = streams["patch"], streams["tile"]
            return Results(
                torch.cat(cells, dim=-1).permute(0, 3, 1, 2).contiguous().cpu().numpy() if cells else None,
                torch.cat(tiles, dim=-1).cpu().numpy() if tiles else None,
            )
