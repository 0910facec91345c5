"""bench auto runs end to end on the Flanders sample (the smallest real scene) and prints what a
faster auto must keep."""

import pytest

from engine.bench import BenchParams
from engine.errors import EngineError
from engine.runtime.progress import Reporter


def test_an_unknown_scene_is_named():
    from engine.bench.auto import run

    with pytest.raises(EngineError, match="eolearn, crops, got 'peru'"):
        run(BenchParams("auto", quick=True, datasets="peru"), Reporter())


def test_auto_on_flanders_counts_its_fits_and_keeps_the_figures_to_compare():
    from engine.bench.auto import run

    result = run(BenchParams("auto", quick=True, datasets="crops"), Reporter())
    # selection 2 candidates x (5 outer + 10 inner) = 30, curve 3 sizes x 5 folds x the 2-member vote
    # = 30 (the last point is the outer fits), the saved vote 2
    assert result["fits"] == 62
    assert set(result["outer_macro_f1"]) == {"linear on monthly+stats", "knn on monthly+stats"}
    assert all(len(folds) == 5 for folds in result["outer_macro_f1"].values())
    assert len(result["picked_per_fold"]) == 5 and result["chosen"].startswith("soft vote of")
    assert [n for n, _ in result["curve"]] == [10, 50, 200, 500]
