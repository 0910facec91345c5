"""A job's per-modality "scale": values converted while reading, files never rewritten."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.io.job import parse_job
from engine.io.scales import convert_scale
from tests.engine.ops.test_probe_ops import ORIGIN
from tests.engine.rasters import write_geotiff
from tests.engine.test_missing_bands import anysat, embed  # noqa: F401 - fixture


def dates(folder, factor: float) -> list[str]:
    """Three 10 x 10 px Sentinel-2 dates; digital numbers times ``factor``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    return [
        str(
            write_geotiff(
                folder / f"S2_2020060{t + 1}.tif",
                (rng.uniform(500, 3000, (10, 10, 10)) * factor).astype(np.float32),
                origin=ORIGIN,
            )
        )
        for t in range(3)
    ]


def digest(files) -> list[str]:
    return [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files]


def test_reflectance_read_as_digital_numbers_embeds_like_the_digital_numbers(tmp_path, anysat):  # noqa: F811
    dn = embed(anysat, dates(tmp_path / "dn", 1.0), tmp_path / "dn.tif")
    reflectance = dates(tmp_path / "refl", 1e-4)
    before = digest(reflectance)
    raw = embed(anysat, reflectance, tmp_path / "raw.tif")
    job_entry = {"files": reflectance, "scale": "reflectance_to_dn"}
    job = {
        "model": anysat,
        "modalities": {"s2": job_entry},
        "patch_size": 20,
        "threads": 1,
        "precision": "fp32",
        "outputs": {"embeddings": str(tmp_path / "converted.tif"), "embeddings_level": "local"},
    }
    from engine.runtime.registry import run_operation

    run_operation("embed", {"job": job})
    with rasterio.open(tmp_path / "converted.tif") as ds:
        converted = ds.read()
    np.testing.assert_allclose(converted, dn, atol=1e-3)
    assert np.abs(raw - dn).max() > 100 * np.abs(converted - dn).max() + 1e-2  # without the key they differ
    assert digest(reflectance) == before  # the inputs are read, never rewritten


def test_conversions_of_values():
    db = np.array([-20.0, -10.0, 0.0, np.nan], np.float32)
    np.testing.assert_allclose(convert_scale(db, "db_to_linear"), [0.01, 0.1, 1.0, np.nan], rtol=1e-6)
    linear = np.array([0.01, 1.0, 0.0, -1.0], np.float32)
    out = convert_scale(linear, "linear_to_db")
    np.testing.assert_allclose(out[:2], [-20.0, 0.0], atol=1e-5)
    assert np.isnan(out[2:]).all() and out.dtype == np.float32  # no dB value for zero or negative power
    np.testing.assert_allclose(convert_scale(np.float32([4000.0]), "dn_to_reflectance"), [0.4])
    assert convert_scale(db, None) is db


def test_an_unknown_scale_is_refused_with_the_known_ones(tmp_path):
    job = {
        "model": "m.safetensors",
        "modalities": {"s1": {"files": "a.tif", "scale": "db"}},
        "outputs": {"embeddings": "e.tif"},
    }
    with pytest.raises(EngineError, match='"scale" is \'db\'; known: dn_to_reflectance, reflectance_to_dn'):
        parse_job(job, tmp_path)
    job["modalities"]["s1"]["scale"] = "db_to_linear"
    assert parse_job(job, tmp_path).modalities["s1"].scale == "db_to_linear"
