"""Progress texts become lines in qgis_process: a loop's counter is passed on every tenth, not every step."""

from __future__ import annotations

from omnisat_qgis.worker_client import ProgressLines


def test_a_counted_loop_gives_a_line_every_ten_points():
    lines = ProgressLines()
    texts = [f"Mapping windows ({k}/400)" for k in range(1, 401)]
    shown = [t for k, t in enumerate(texts, 1) if lines.wanted(10 + 80 * k / 400, t)]
    assert shown[0] == "Mapping windows (1/400)" and 8 <= len(shown) <= 10
    assert all(t in texts for t in shown)


def test_a_new_wording_is_shown_at_once_and_the_end_always():
    lines = ProgressLines()
    assert lines.wanted(0.0, "Reading the reference sample")
    assert not lines.wanted(1.0, "Reading the reference sample")
    assert lines.wanted(1.5, "cross-validation fold 1/5")
    assert not lines.wanted(2.0, "cross-validation fold 2/5")
    assert lines.wanted(12.0, "cross-validation fold 3/5")
    assert lines.wanted(100.0, "cross-validation fold 5/5")  # the last step, whatever moved before
    # Numbers with decimals and thousands separators are numbers too: the same wording.
    assert lines.wanted(20.0, "downloading AnySat.pth: 1,024.5 MB of 4,096 MB")
    assert not lines.wanted(21.0, "downloading AnySat.pth: 1,030.0 MB of 4,096 MB")
