"""A PNG quicklook of a class map with its legend (the colours and names the map file carries) and a
scale bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from engine.io.atomic import atomic_output
from engine.io.raster import open_raster


def class_map_rgb(path: str | Path, max_side: int = 800) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int]]]]:
    """(H, W, 3) colours of the map read at most ``max_side`` pixels a side (nearest), and the legend:
    (class name, colour) of the classes present."""
    with open_raster(path, "class map") as ds:
        scale = max(ds.width, ds.height) / max_side
        shape = (max(1, round(ds.height / max(scale, 1))), max(1, round(ds.width / max(scale, 1))))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        colormap = ds.colormap(1)
        tags = ds.tags(1)
        nodata = ds.nodata
    names = json.loads(tags["CLASS_NAMES"]) if "CLASS_NAMES" in tags else None
    lookup = np.full((256, 3), 255, np.uint8)  # white: no data or no colour
    for value, rgba in colormap.items():
        if value < 256 and rgba[3] > 0:
            lookup[value] = rgba[:3]
    rgb = lookup[np.clip(data, 0, 255)]
    present = [int(v) for v in np.unique(data) if nodata is None or v != nodata]
    legend = [(names[v] if names and v < len(names) else str(v), tuple(int(c) for c in lookup[v])) for v in present]
    return rgb, legend


def ground_width(path: str | Path) -> float | None:
    """The map's width in metres, or None when its CRS is not projected in metres (no scale bar)."""
    with open_raster(path, "class map") as ds:
        crs, width = ds.crs, ds.bounds.right - ds.bounds.left
    if crs is None or not crs.is_projected:
        return None
    factor = crs.linear_units_factor[1]  # metres per CRS unit (1 for metres, 0.3048 for feet)
    return width * factor


def scale_length(width_m: float) -> float:
    """A round length (1, 2 or 5 x 10^k m) of at most a quarter of ``width_m``: the scale bar's."""
    target = width_m / 4
    power = 10 ** np.floor(np.log10(target))
    return float(max(m * power for m in (1, 2, 5) if m * power <= target))


def write_quicklook(classes_path: str | Path, output: str | Path, title: str = "") -> Path:
    """Render the class map with its legend as a PNG (matplotlib)."""
    import matplotlib  # lazy: keeps matplotlib out of this module

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # lazy: keeps matplotlib out of this module
    from matplotlib.patches import Patch  # lazy: keeps matplotlib out of this module

    rgb, legend = class_map_rgb(classes_path)
    height, width = rgb.shape[:2]
    figure = Figure(figsize=(7.5, 6.0 * height / max(width, 1) + 0.6), dpi=110)
    axes = figure.add_axes((0.02, 0.02, 0.68, 0.9))
    axes.imshow(rgb, interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=9)
    width_m = ground_width(classes_path)
    if width_m:
        from matplotlib.font_manager import FontProperties  # lazy: keeps matplotlib out of this module
        from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # lazy: matplotlib

        length = scale_length(width_m)
        label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        axes.add_artist(
            AnchoredSizeBar(
                axes.transData,
                length / width_m * width,
                label,
                "lower left",
                pad=0.4,
                sep=3,
                size_vertical=height / 100,
                color="black",
                frameon=True,
                fontproperties=FontProperties(size=8),
            )
        )
    figure.legend(
        handles=[Patch(facecolor=np.array(c) / 255.0, edgecolor="#444", label=n) for n, c in legend],
        loc="center right",
        fontsize=8,
        frameon=False,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with atomic_output(output, "quicklook") as temp:
        Path(temp).write_bytes(buffer.getvalue())
    return Path(output)
