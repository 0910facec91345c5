"""The quicklook PNG paints each class in its colour-table colour and carries a scale bar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from engine.analysis.quicklook import ground_width, scale_length, write_quicklook
from tests.engine.rasters import write_geotiff

COLOURS = {0: (43, 123, 209), 1: (27, 94, 32), 2: (232, 200, 114)}  # water, forest, farm


def class_map(path, crs="EPSG:32633", pixel=10.0):
    """Three vertical stripes: class 0 on the left, 1 in the middle, 2 on the right; 255 nodata."""
    data = np.repeat(np.repeat(np.array([[0, 1, 2]], np.uint8), 60, 0), 40, 1)[None]
    write_geotiff(path, data, crs=crs, pixel=pixel, nodata=255)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {k: (*rgb, 255) for k, rgb in COLOURS.items()} | {255: (0, 0, 0, 0)})
        ds.update_tags(1, CLASS_NAMES=json.dumps(["water", "forest", "farm"]))
    return path


def painted(png):
    import matplotlib.image

    image = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(np.uint8)
    return {k: np.argwhere((image == rgb).all(-1)) for k, rgb in COLOURS.items()}, image


def test_each_class_takes_its_colour_table_entry(tmp_path):
    png = write_quicklook(class_map(tmp_path / "classes.tif"), tmp_path / "quicklook.png", "test")
    where, image = painted(png)
    # Each class covers a third of the map: thousands of pixels in exactly its colour (the legend's
    # patches add a few hundred), and the stripes keep their order from left to right.
    counts = {k: len(v) for k, v in where.items()}
    assert min(counts.values()) > 5000, counts
    assert max(counts.values()) < 1.2 * min(counts.values())
    centres = [np.median(where[k][:, 1]) for k in (0, 1, 2)]
    assert centres[0] < centres[1] < centres[2]


def test_the_scale_bar_is_a_round_length_of_the_ground(tmp_path):
    assert scale_length(1200.0) == 200.0
    assert scale_length(2000.0) == 500.0
    assert scale_length(15000.0) == 2000.0
    assert ground_width(class_map(tmp_path / "utm.tif")) == pytest.approx(1200.0)
    # Degrees have no fixed length on the ground: no bar, the quicklook is still written.
    geographic = class_map(tmp_path / "wgs84.tif", crs="EPSG:4326", pixel=0.0001)
    assert ground_width(geographic) is None
    assert write_quicklook(geographic, tmp_path / "wgs84.png").is_file()


def test_the_bar_is_drawn_on_projected_maps_only(tmp_path):
    # The bar is black on a white frame, in the map's lower left corner; the map itself has no black.
    _, projected = painted(write_quicklook(class_map(tmp_path / "utm.tif"), tmp_path / "utm.png"))
    _, geographic = painted(
        write_quicklook(class_map(tmp_path / "wgs84.tif", "EPSG:4326", 0.0001), tmp_path / "wgs84.png")
    )
    assert black_pixels(projected) > black_pixels(geographic) + 50


def black_pixels(image) -> int:
    return int((image < 40).all(-1).sum())


def test_class_colours_by_name_or_in_order():
    from engine.errors import EngineError
    from engine.probes.probe_file import class_colors, default_colors

    names = ["farm", "forest", "water"]
    assert class_colors(names, None) == default_colors(3)
    assert class_colors(names, ["#010101", "#020202", "#030303"]) == ["#010101", "#020202", "#030303"]
    # By name: extra names are ignored, a class not named keeps its default colour.
    assert class_colors(names, ["water=#2b7bd1", "farm=#e8c872", "snow=#ffffff"]) == [
        "#e8c872",
        default_colors(3)[1],
        "#2b7bd1",
    ]
    with pytest.raises(EngineError, match="all in class order"):
        class_colors(names, ["water=#2b7bd1", "#020202"])
