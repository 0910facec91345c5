"""`python -m engine models`: presets with parameter counts, TreeSatAI-TS within 3% of the reference."""

import json
import subprocess
import sys

import pytest

from engine.runtime.registry import run_operation
from tests.conftest import ROOT

# Counted by instantiating the reference implementation with random weights (REFERENCE.md, issue 3).
REFERENCE_TREESATAI = {
    "encoder.aerial": 3.55e6,
    "encoder.s2": 0.40e6,
    "encoder.s1_asc": 0.40e6,
    "encoder_total": 9.8e6,
    "decoders_total": 1.8e6,
}


def test_models_operation_lists_all_presets_with_counts():
    result = run_operation("models", {})
    by_name = {p["name"]: p for p in result["presets"]}
    assert {"omnisat-treesatai", "omnisat-pastis", "omnisat-flair"} <= set(by_name)
    counts = by_name["omnisat-treesatai"]["parameters"]
    for component, reference in REFERENCE_TREESATAI.items():
        assert counts[component] == pytest.approx(reference, rel=0.03), component
    assert counts["head.classification"] == 256 * 15 + 15
    assert by_name["omnisat-treesatai"]["modalities"]["s2"]["bands"][0] == "B2"


def test_models_command_line_json():
    out = subprocess.run(
        [sys.executable, "-m", "engine", "models", "--json", "--preset", "omnisat-flair"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    presets = json.loads(out.stdout)["presets"]
    assert [p["name"] for p in presets] == ["omnisat-flair"]
    assert presets[0]["parameters"]["total"] > 0
