"""Messages count in the right noun form ("1 polygon", "2 polygons") and take the right article."""

from __future__ import annotations

from engine.wording import article, plural, span


def test_plural_follows_the_count():
    assert plural(1, "polygon") == "1 polygon"
    assert plural(0, "polygon") == "0 polygons"
    assert plural(3, "class") == "3 classes"
    assert plural(2, "labelled cell") == "2 labelled cells"
    assert plural(2, "child", "children") == "2 children"


def test_article_before_a_vowel():
    assert article("auto") == "an auto"
    assert article("extra_trees") == "an extra_trees"
    assert article("linear") == "a linear"


def test_span_writes_equal_ends_once():
    assert span([5, 5, 5]) == "5"
    assert span([3, 5, 4]) == "3-5"


def test_fit_notes_agree_with_their_counts():
    from types import SimpleNamespace

    from engine.probes.workflow import _notes

    class Samples(list):
        report = {"features_outside_extent": 1, "polygons_below_min_coverage": 1}

    data = SimpleNamespace(samples=Samples([0, 1, 2]), dropped_nodata=1)
    outcome = SimpleNamespace(validation_rule="5 folds", candidate=SimpleNamespace(name="linear"), notes=[])
    notes = _notes(data, outcome, SimpleNamespace(min_coverage=0.5))
    assert "1 feature lies outside the raster and was dropped." in notes
    assert "1 polygon covers no cell by 50% on its own." in notes
    assert "1 labelled cell had no embedding or input value (nodata) and was left out." in notes
    Samples.report = {"features_outside_extent": 2, "polygons_below_min_coverage": 3}
    notes = _notes(SimpleNamespace(samples=Samples([0]), dropped_nodata=0), outcome, SimpleNamespace(min_coverage=0.5))
    assert "2 features lie outside the raster and were dropped." in notes
    assert "3 polygons cover no cell by 50% on their own." in notes


def test_a_one_window_plan_says_window():
    from types import SimpleNamespace

    from engine.mapping.plan import Plan

    # describe() reads only these attributes: a grid of one window.
    grid = SimpleNamespace(crs=SimpleNamespace(to_string=lambda: "EPSG:32633"), width=12, height=12, res=10.0)
    windows = type("Windows", (list,), {"tile": 16, "overlap": 2})([0])
    geometry = SimpleNamespace(patch_grid=grid, output_grid=grid, windows=windows, patch_size_m=10.0)
    plan = SimpleNamespace(geometry=geometry, shard=None, device=SimpleNamespace(type="cpu"), dtype="torch.float32")
    assert "; 1 window of 16 patches" in Plan.describe(plan)
