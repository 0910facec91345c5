"""Today's outputs of classify, embed (every level), fit-probe, apply-probe and change on the
real samples equal the recorded ones (tests/engine/data/golden, README there): bit for bit,
floats within 1e-6 where only the order of float operations may differ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.golden_cases import cases

pytestmark = pytest.mark.slow
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


@pytest.fixture(scope="module")
def produced(shared_data, tmp_path_factory):
    torch.set_num_threads(2)
    table = cases(shared_data, tmp_path_factory.mktemp("golden"))
    return {name: case() for name, case in table.items()}  # in order: the probe case reads an earlier raster


def test_every_recorded_case_still_runs(produced):
    assert sorted(produced) == sorted(MANIFEST)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_outputs_equal_the_recorded_ones(produced, name):
    recorded, now = MANIFEST[name], produced[name]
    assert json.loads(json.dumps(now["result"], sort_keys=True, default=str)) == recorded["result"]
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == sorted(now["rasters"])
        for key in arrays.files:
            expected, raster = arrays[key], now["rasters"][key]
            assert raster["meta"] == recorded["rasters"][key], f"{name}/{key}: metadata"
            assert raster["data"].dtype == expected.dtype and raster["data"].shape == expected.shape
            if np.issubdtype(expected.dtype, np.floating):
                np.testing.assert_allclose(
                    raster["data"], expected, rtol=0, atol=1e-6, equal_nan=True, err_msg=f"{name}/{key}"
                )
            else:
                np.testing.assert_array_equal(raster["data"], expected, err_msg=f"{name}/{key}")
