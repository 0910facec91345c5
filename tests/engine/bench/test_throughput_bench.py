"""``bench throughput`` on the tiny models and a 160 m square: the rows it prints agree with the
figures it returns and with each other (no timing asserted: the figures are the bench's output)."""

import re

import pytest

from engine.errors import EngineError
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation


class Lines(Reporter):
    def __init__(self):
        self.lines = []

    def log(self, message, level="info"):
        self.lines.append(message)


ROW = re.compile(
    r"^(\S+) (patch|dense) \(.+\): ([\d.]+) km²/h \(([\d.]+) km², 16 x 16 px, in ([\d.]+) s, (\d+) windows\), "
    r"outside the model ([\d.]+)%, peak RSS ([\d.]+) GB, S2 tile (\d+) h \((\d+) windows, ([\d.]+) km²/h\); "
    r"load ([\d.]+)$"
)


def test_throughput_prints_consistent_rows_for_both_families_and_levels():
    lines = Lines()
    params = {"target": "throughput", "quick": True, "threads": 1, "models": "anysat-tiny,universat-tiny"}
    result = run_operation("bench", params, lines)
    rows = result["rows"]
    assert set(rows) == {f"{m}-tiny {level}" for m in ("anysat", "universat") for level in ("patch", "dense")}
    printed = {f"{m[1]} {m[2]}": m for m in map(ROW.match, lines.lines) if m}
    assert set(printed) == set(rows)
    for key, row in rows.items():
        assert row["km2"] == pytest.approx(0.16**2)  # the quick 16 x 16 px square at 10 m
        assert 0 < row["model_seconds"] <= row["seconds"] and row["windows"] >= 1
        assert 0 <= row["outside_model_share"] <= 1
        assert row["km2_per_h"] == pytest.approx(row["km2"] / row["seconds"] * 3600)
        assert row["tile_windows"] > 100**2  # windows of at most 1.1 km over 110 km
        assert row["s2_tile_hours"] == pytest.approx(row["seconds"] / row["windows"] * row["tile_windows"] / 3600)
        assert row["s2_tile_km2_per_h"] == pytest.approx(110 * 110 / row["s2_tile_hours"])
        assert 0 < row["peak_rss_gb"] < 64
        match = printed[key]
        assert float(match[3]) == pytest.approx(row["km2_per_h"], abs=0.006)
        assert float(match[7]) == pytest.approx(100 * row["outside_model_share"], abs=0.06)
        assert float(match[8]) == pytest.approx(row["peak_rss_gb"], abs=0.006)
        assert int(match[9]) == round(row["s2_tile_hours"]) and int(match[10]) == row["tile_windows"]
        assert float(match[11]) == pytest.approx(row["s2_tile_km2_per_h"], abs=0.006)


def test_throughput_refuses_an_unknown_model():
    with pytest.raises(EngineError, match="anysat-base"):
        run_operation("bench", {"target": "throughput", "quick": True, "models": "anysat-huge"})
