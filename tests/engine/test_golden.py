"""Today's outputs of classify, embed (every level), fit-probe, apply-probe and change on the
real samples equal the recorded ones (tests/engine/data/golden, README there): integers and texts
exactly, floats within what another CPU's float kernels change.

The project's machines differ (AVX2 only, or AVX-512 with bf16): the same code on the same
inputs gave embeddings up to 1.8e-6 apart (values up to 3.3) and a change threshold 7e-8 apart
between the two, every class raster identical. A probe fitted by L-BFGS on those embeddings
amplifies that: its probabilities ended 1.4e-4 apart and its cross-validated macro-F1 1.3e-4
apart, its class maps identical."""

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
MODEL_TOLERANCE = 1e-5  # a network's float outputs across CPU kernels (module docstring)
FITTED_TOLERANCE = 1e-3  # outputs of a probe fitted on them, and its scores
FITTED = {"fit-and-apply-probe"}


def same(now, recorded, tolerance: float, where: str = "result") -> None:
    """``now`` equals ``recorded``: floats within ``tolerance``, everything else exactly."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        assert sorted(now) == sorted(recorded), f"{where}: keys {sorted(now)} != {sorted(recorded)}"
        for key in recorded:
            same(now[key], recorded[key], tolerance, f"{where}/{key}")
    elif isinstance(recorded, list) and isinstance(now, list):
        assert len(now) == len(recorded), f"{where}: {len(now)} items, recorded {len(recorded)}"
        for i, (a, b) in enumerate(zip(now, recorded)):
            same(a, b, tolerance, f"{where}[{i}]")
    elif isinstance(recorded, float) and isinstance(now, float):
        assert now == pytest.approx(recorded, rel=0, abs=tolerance), f"{where}: {now} != {recorded}"
    elif isinstance(recorded, str) and isinstance(now, str) and now != recorded and "." in recorded:
        same(_number(now, where), _number(recorded, where), tolerance, where)  # a float written as a tag
    else:
        assert now == recorded, f"{where}: {now!r} != {recorded!r}"


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
    tolerance = FITTED_TOLERANCE if name in FITTED else MODEL_TOLERANCE
    same(json.loads(json.dumps(now["result"], sort_keys=True, default=str)), recorded["result"], tolerance)
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == sorted(now["rasters"])
        for key in arrays.files:
            expected, raster = arrays[key], now["rasters"][key]
            same(raster["meta"], recorded["rasters"][key], tolerance, f"{name}/{key}: metadata")
            assert raster["data"].dtype == expected.dtype and raster["data"].shape == expected.shape
            if np.issubdtype(expected.dtype, np.floating):
                np.testing.assert_allclose(
                    raster["data"], expected, rtol=0, atol=tolerance, equal_nan=True, err_msg=f"{name}/{key}"
                )
            else:
                np.testing.assert_array_equal(raster["data"], expected, err_msg=f"{name}/{key}")


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise AssertionError(f"{where}: {text!r} differs") from None


def test_the_comparison_fails_beyond_its_tolerance_and_on_any_other_difference():
    recorded = {"a": [0.5, "x", 3, "0.25", "x.y"]}
    same({"a": [0.5 + 5e-6, "x", 3, "0.250004", "x.y"]}, recorded, MODEL_TOLERANCE)
    for changed in (
        {"a": [0.5 + 2e-5, "x", 3, "0.25", "x.y"]},
        {"a": [0.5, "y", 3, "0.25", "x.y"]},
        {"a": [0.5, "x", 4, "0.25", "x.y"]},
        {"a": [0.5, "x", 3, "0.2501", "x.y"]},
        {"a": [0.5, "x", 3, "0.25", "x.z"]},
        {"a": [0.5, "x", 3, "0.25"]},
        {},
    ):
        with pytest.raises(AssertionError):
            same(changed, recorded, MODEL_TOLERANCE)
