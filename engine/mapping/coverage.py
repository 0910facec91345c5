"""What a mapping run saw: the windows that held data, per modality, and the size of its area.

NaN-only, nodata-only or all-cloud inputs must not end in exit status 0 with an all-nodata
map: when no window held any valid pixel the run is an error naming the modalities and what
to check, and its outputs are discarded; when most windows held none, a warning gives the
share. A raster header that declares an absurd size is refused before a window is generated,
unless the job gives an extent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from engine.errors import EngineError
from engine.runtime.progress import Reporter

# Beyond this area (500 x 500 km) a run without an extent is most likely a damaged or wrong
# header; a Sentinel-2 tile is 110 x 110 km.
MAX_AREA_KM2 = 250_000.0
MOSTLY_EMPTY = 0.5  # share of windows without data above which a run warns
WHAT_TO_CHECK = (
    "check the files' nodata value, the cloud masks (type, threshold) and the band scaling "
    "(values against the normalization statistics)"
)


def check_area(width_m: float, height_m: float, extent_given: bool) -> None:
    """Refuse an area beyond MAX_AREA_KM2 unless the job names an extent."""
    if extent_given or width_m * height_m / 1e6 <= MAX_AREA_KM2:
        return
    raise EngineError(
        f"The area is {width_m / 1000:,.0f} x {height_m / 1000:,.0f} km, more than the "
        f"{MAX_AREA_KM2:,.0f} km2 mapped without an extent (a raster header may declare a wrong size or "
        'pixel size): give an "extent" in the job.'
    )


@dataclass
class Coverage:
    """Counts, over the windows read, those where each modality had a valid pixel."""

    files: dict[str, list[str]]  # modality -> its files, for the messages
    windows: int = 0
    with_any: int = 0
    with_modality: Counter = field(default_factory=Counter)

    def add(self, present: list[tuple[str, ...]], read: int) -> None:
        """``present``: per window with data, its modalities with a valid pixel; ``read``: windows read."""
        self.windows += read
        self.with_any += len(present)
        self.with_modality.update(name for names in present for name in names)

    def counts(self) -> dict:
        """The counts as JSON (a shard's, summed by ``merge`` when the shards are assembled)."""
        return {"windows": self.windows, "with_any": self.with_any, "with_modality": dict(self.with_modality)}

    def merge(self, counts: dict) -> None:
        self.windows += counts["windows"]
        self.with_any += counts["with_any"]
        self.with_modality.update(counts["with_modality"])

    def check(self, reporter: Reporter) -> None:
        """Raise when no window had data; warn when most had none, or a modality had none anywhere."""
        if self.windows and not self.with_any:
            listed = "; ".join(f"'{name}' ({_files(paths)})" for name, paths in self.files.items())
            raise EngineError(
                f"No window had data: every pixel of {listed} is nodata, NaN or masked on the job's area, "
                f"so the map would be empty. Nothing was written: {WHAT_TO_CHECK}."
            )
        for name, paths in self.files.items():
            if len(self.files) > 1 and not self.with_modality[name]:
                reporter.log(
                    f"Modality '{name}' ({_files(paths)}) had no valid pixel in any window: the maps "
                    f"come from the other modalities alone. To use it, {WHAT_TO_CHECK}.",
                    "warning",
                )
        empty = self.windows - self.with_any
        if self.windows and empty / self.windows > MOSTLY_EMPTY:
            reporter.log(
                f"{empty / self.windows:.0%} of the windows ({empty} of {self.windows}) had no data: "
                f"their cells are nodata in the outputs. If that is not the inputs' own coverage, "
                f"{WHAT_TO_CHECK}.",
                "warning",
            )


def _files(paths: list[str]) -> str:
    return ", ".join(paths[:2]) + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")
