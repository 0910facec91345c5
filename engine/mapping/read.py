"""Reading a Plan's windows: every file opened once, warped once onto the grid when off it, normalised.

A patch is nodata in the outputs when no modality has a valid observation in it. A date
takes part in a window when at least ``min_valid_fraction`` of its pixels are valid
(clouds, nodata; ``keep_dates``, shared with training's rasters reader); otherwise it is
masked (``date_mask``). Invalid pixels of kept dates read as the band mean. The next batch
is read in a background thread while the model runs on this one, when a core is free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from engine.io.align import ModalityReader, WarpCache
from engine.io.dates import day_of_year
from engine.io.grid import scale_window
from engine.io.normalize import normalize
from engine.io.scales import convert_scale
from engine.mapping.plan import Plan
from engine.runtime.progress import Reporter


def keep_dates(valid: np.ndarray, min_valid_fraction: float) -> np.ndarray:
    """(T,) bool from a window's (T, h, w) valid pixels: the dates with at least
    ``min_valid_fraction`` of them valid; when none is, the clearest one (a model needs a date)."""
    share = valid.reshape(valid.shape[0], -1).mean(axis=1)
    keep = share >= min_valid_fraction
    if not keep.any():
        keep[int(np.argmax(share))] = True
    return keep


@dataclass
class WindowBatch:
    windows: list[Window]  # patch units; only windows with some valid data
    inputs: dict[str, np.ndarray]
    dates: dict[str, np.ndarray]
    date_mask: dict[str, np.ndarray]
    valid: np.ndarray  # (B, Gh, Gw) bool: a patch holds at least one valid observation
    present: list[tuple[str, ...]]  # per window, the modalities with any valid pixel
    skipped: int  # windows without any valid data

    def groups(self) -> dict[tuple[str, ...], list[int]]:
        """Windows that see the same modalities (one model call each)."""
        out: dict[tuple[str, ...], list[int]] = {}
        for i, names in enumerate(self.present):
            out.setdefault(names, []).append(i)
        return out

    def having(self, name: str) -> WindowBatch:
        """The windows where modality ``name`` has data; the others count as skipped."""
        keep = [i for i, names in enumerate(self.present) if name in names]
        if len(keep) == len(self.windows):
            return self
        pick = np.array(keep, np.int64)
        return WindowBatch(
            windows=[self.windows[i] for i in keep],
            inputs={n: x[pick] for n, x in self.inputs.items()},
            dates={n: d[pick] for n, d in self.dates.items()},
            date_mask={n: m[pick] for n, m in self.date_mask.items()},
            valid=self.valid[pick],
            present=[self.present[i] for i in keep],
            skipped=self.skipped + len(self.windows) - len(keep),
        )


class WindowReader(contextlib.AbstractContextManager):
    """Reads and normalises batches of windows for every modality of a plan."""

    def __init__(self, plan: Plan, threads: int = 1, reporter: Reporter | None = None):
        """``threads``: GDAL's, for warping off-grid inputs once (before any window is read), each
        announced, with its progress, to ``reporter``."""
        self.plan = plan
        self.readers: dict[str, ModalityReader] = {}
        # The run reads every window of the grid: warp off-grid files once (in a temporary folder that
        # lives as long as this reader) rather than window by window.
        self.warps = WarpCache(threads, reporter) if plan.warp_once else None
        try:
            for name, m in plan.modalities.items():
                self.readers[name] = ModalityReader(m, plan.geometry.modality_grids[name], self.warps)
        except BaseException:
            self.close()
            raise
        self.doy = {
            n: np.array([day_of_year(d) for d in m.dates], np.float32)
            for n, m in plan.modalities.items()
            if m.spec.has_dates
        }

    def _pixels_per_patch(self, name: str) -> int:
        return round(self.plan.geometry.patch_grid.res / self.plan.geometry.modality_grids[name].res)

    def _normalize(self, name: str, data: np.ndarray) -> np.ndarray:
        """(..., C_read, h, w) -> (..., C, h, w): missing bands get the model's fill value."""
        m, (mean, std) = self.plan.modalities[name], self.plan.statistics[name]
        data = convert_scale(data, m.scale)
        if m.band_index is None:
            return normalize(data, mean, std)
        index = list(m.band_index)
        full = np.full((*data.shape[:-3], m.spec.n_bands, *data.shape[-2:]), m.fill_value, np.float32)
        full[..., index, :, :] = normalize(data, mean[index], std[index])
        return full

    def _read_rows(self, windows: list[Window]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """Per modality, (data, valid) of each window; one read per row of windows (fewer GDAL calls)."""
        rows: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            rows.setdefault(w.row_off, []).append(i)
        out: dict[str, list] = {name: [None] * len(windows) for name in self.readers}
        for row, members in rows.items():
            left = min(windows[i].col_off for i in members)
            right = max(windows[i].col_off + windows[i].width for i in members)
            box = Window(left, row, right - left, windows[members[0]].height)
            for name, reader in self.readers.items():
                factor = self.plan.geometry.patch_grid.res / self.plan.geometry.modality_grids[name].res
                k = self._pixels_per_patch(name)
                data, ok = reader.read(scale_window(box, factor))
                for i in members:
                    w = windows[i]
                    cols = slice((w.col_off - left) * k, (w.col_off - left + w.width) * k)
                    out[name][i] = (data[..., cols], ok[..., cols])
        return out

    def read(self, windows: list[Window]) -> WindowBatch:
        per_window = []
        blocks = self._read_rows(windows)
        for index, window in enumerate(windows):
            arrays, masks, valid, present = {}, {}, np.zeros((window.height, window.width), bool), []
            for name in self.readers:
                k = self._pixels_per_patch(name)
                data, ok = blocks[name][index]
                # A patch counts as observed when any date has a valid pixel in it.
                seen = ok.any(axis=0).reshape(window.height, k, window.width, k).any(axis=(1, 3))
                valid |= seen
                if seen.any():  # a modality without any valid pixel here is left out of the model call
                    present.append(name)
                arrays[name] = self._normalize(name, data)
                masks[name] = keep_dates(ok, self.plan.min_valid_fraction)
            per_window.append((window, arrays, masks, valid, tuple(present)))
        return self._batch(per_window)

    def _batch(self, per_window: list) -> WindowBatch:
        used = [w for w in per_window if w[3].any()]
        names = list(self.readers)
        batch = WindowBatch(
            windows=[w[0] for w in used],
            inputs={n: np.stack([w[1][n] for w in used]) if used else None for n in names},
            dates={n: np.broadcast_to(self.doy[n], (len(used), self.doy[n].size)) for n in self.doy},
            date_mask={
                n: np.stack([w[2][n] for w in used]) if used else None
                for n in names
                if self.plan.modalities[n].spec.kind == "series"
            },
            valid=np.stack([w[3] for w in used]) if used else np.zeros((0, 1, 1), bool),
            present=[w[4] for w in used],
            skipped=len(per_window) - len(used),
        )
        for n in names:  # images are (B, C, H, W): drop the single "date"
            if used and self.plan.modalities[n].spec.kind == "image":
                batch.inputs[n] = batch.inputs[n][:, 0]
        return batch

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        if self.warps is not None:
            self.warps.close()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def read_batches(
    reader: WindowReader, batches: Iterable[list[Window]], ahead: bool
) -> Iterator[Iterator[tuple[list[Window], WindowBatch]]]:
    """(windows, batch) in order; with ``ahead``, the next batch is read in a thread while the model runs.

    Reading ahead pays only with a core to spare: on a CPU whose cores all run torch
    threads, the extra thread slows the model more than it hides reading (measured).
    """
    if not ahead:
        yield ((windows, reader.read(windows)) for windows in batches)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnisat-read") as pool:

        def generate():
            queue = iter(batches)
            current = next(queue, None)
            pending = pool.submit(reader.read, current) if current is not None else None
            while current is not None:
                batch = pending.result()
                following = next(queue, None)
                pending = pool.submit(reader.read, following) if following is not None else None
                yield current, batch
                current = following

        yield generate()
