"""The embedding-level registry, the capabilities models declare for tiled inference, the
heads' reading of features, and the date-keeping rule shared by inference and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine

from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.job import parse_job
from engine.mapping.geometry import DenseLayout, Geometry
from engine.mapping.levels import LEVEL_NAMES, LEVELS, level
from engine.mapping.read import keep_dates
from engine.mapping.tiling import WindowGrid
from engine.models.base import Features
from engine.models.heads import HeadConfig, build_head
from engine.probes.classifiers.neural import Probe
from engine.probes.head import ProbeHead
from tests.engine import anysat_helpers, omnisat_helpers
from tests.engine.raster_fixtures import TinyConfig, TinyModel

D = 4


def features(b=2, g=3, n=2, local=True) -> Features:
    gen = torch.Generator().manual_seed(0)
    return Features(
        tile=torch.randn(b, D, generator=gen),
        patch=torch.randn(b, g, g, D, generator=gen),
        dense=torch.randn(b, g * n, g * n, 2 * D, generator=gen),
        local=torch.randn(b, g, g, D, generator=gen) if local else None,
    )


def geometry(n=2) -> Geometry:
    grid = Grid("EPSG:32633", Affine(20.0, 0, 500000.0, 0, -20.0, 5000000.0), 3, 3)
    return Geometry(
        grid,
        grid.with_resolution(10.0),
        {},
        20.0,
        WindowGrid(3, 3, 3, 0),
        dense=DenseLayout("s2", n, grid.with_resolution(20.0 / n)),
        tile_grid=grid,
    )


@pytest.mark.parametrize("name", LEVEL_NAMES)
def test_every_level_selects_features_of_its_declared_width(name):
    lv = level(name)
    values = lv.select(features())
    assert values.shape[-1] == lv.width(D)


def test_the_job_format_accepts_exactly_the_registry_levels():
    job = {"model": "m.safetensors", "modalities": {"s2": {"files": "s2.tif"}}, "outputs": {"embeddings": "e.tif"}}
    for name in LEVELS:
        assert (
            parse_job(dict(job, outputs={"embeddings": "e.tif", "embeddings_level": name})).outputs.embeddings_level
            == name
        )
    with pytest.raises(EngineError, match="embeddings_level"):
        parse_job(dict(job, outputs={"embeddings": "e.tif", "embeddings_level": "pixel"}))


def test_dense_packing_is_undone_on_the_sub_patch_grid():
    lv, geo = level("dense"), geometry(n=2)
    dense = features().dense  # (B, 6, 6, 2D)
    packed = lv.pack(dense, geo)  # (B, 3, 3, 2D * 4): sub-patches as channels of their patch
    assert packed.shape == (2, 3, 3, lv.channels(2 * D, geo))
    rows = packed[0].permute(2, 0, 1).numpy()  # one window's stream rows (C, h, w)
    covered = np.array([[True, False, True]] * 3)
    values, ok, row0, factor = lv.unpack(rows, covered, 1, geo)
    np.testing.assert_array_equal(values, dense[0].permute(2, 0, 1).numpy())
    assert ok.shape == (6, 6) and not ok[:, 2:4].any() and ok[:, :2].all()
    assert (row0, factor) == (2, 1)


def test_patch_levels_write_classes_on_the_output_grid_and_tiles_on_their_cells():
    geo = geometry()
    assert level("patch").unpack(np.zeros((1, 1, 3)), np.ones((1, 3), bool), 4, geo, classes=True)[2:] == (4, 2)
    assert level("patch").grid(geo, classes=True).res == 10.0 and level("patch").grid(geo).res == 20.0
    assert level("tile").stream == "tile" and level("tile").edge_to_edge and level("dense").sub_patches


def test_missing_local_features_are_a_clear_error():
    with pytest.raises(EngineError, match="no local"):
        level("both").select(features(local=False))


def test_models_declare_their_defaults_and_dense_features():
    omnisat = omnisat_helpers.tiny_model()
    assert omnisat.default_window() == max(omnisat.config.grid) and not omnisat.has_dense_features
    with pytest.raises(EngineError, match="only AnySat"):
        omnisat.dense_layout(["s2"], 10.0)
    tiny = TinyModel(TinyConfig())
    assert tiny.default_window() is None and tiny.default_patch_size_m() == 10.0
    anysat = anysat_helpers.small_model(names=("aerial", "s2", "modis"))
    assert anysat.has_dense_features
    assert anysat.dense_layout(["s2", "aerial", "modis"], 20.0) == (
        "aerial",
        round(20.0 / anysat.sub_patch_m("aerial")),
    )
    with pytest.raises(EngineError, match="sub-patches among"):
        anysat.dense_layout(["modis"], 20.0)


def test_dense_features_only_when_asked():
    anysat = anysat_helpers.small_model(names=("s2",))
    inputs, dates = anysat_helpers.batch(20, names=("s2",))
    assert anysat.features(inputs, dates, patch_size_m=10.0).dense is None
    assert anysat.features(inputs, dates, patch_size_m=10.0, dense="s2").dense.shape[1:3] == (2, 2)
    omnisat = omnisat_helpers.tiny_model()
    with pytest.raises(EngineError, match="only AnySat"):
        omnisat.features(*omnisat_helpers.tiny_batch()[:2], dense="s2")


@pytest.mark.parametrize("kind, expected", [("classification", "tile"), ("patch", "patch"), ("dense", "dense")])
def test_heads_read_the_features_of_their_level(kind, expected):
    head = build_head(HeadConfig(kind, 2 * D if kind == "dense" else D, 3))
    assert head.level == expected
    assert torch.equal(head.read(features()), level(expected).select(features()))


def test_a_probe_head_reads_its_level():
    head = ProbeHead(Probe(2 * D, 3), "both")
    assert head.level == "both" and head.class_axis == -1
    assert head.read(features()).shape[-1] == 2 * D
    with pytest.raises(EngineError, match="embeddings_level"):
        ProbeHead(Probe(D, 3), "pixel")


def test_keep_dates_keeps_the_clear_ones_or_else_the_clearest():
    valid = np.zeros((3, 2, 2), bool)
    valid[0, 0, 0] = True
    valid[1] = True
    np.testing.assert_array_equal(keep_dates(valid, 0.5), [False, True, False])
    np.testing.assert_array_equal(keep_dates(valid[[0, 2]], 0.5), [True, False])  # none clear: the clearest


def test_the_plugin_offers_the_registry_levels():
    """The plugin may not import the engine: its static list is read from its source and compared."""
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[3] / "omnisat_qgis" / "algorithms" / "mapping.py"
    assigned = {
        node.targets[0].id: node.value
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(assigned["EMBEDDING_LEVELS"]) == LEVEL_NAMES
