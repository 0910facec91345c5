"""The silence checker (engine.bench.gaps): stamps lines as they arrive and finds the longest gaps."""

import io

from engine.bench import gaps


def test_gaps_are_charged_to_the_line_before_them_and_counted_from_the_start():
    log = ["[     1.50] first", "[     2.00] second", "no stamp: skipped", "[    9.25] third\n"]
    found = gaps.gaps(gaps.read_stamped(log))
    assert [(g.seconds, g.after) for g in found] == [(7.25, "second"), (1.5, "(the start)"), (0.5, "first")]
    text = gaps.summary(found, top=1)
    assert text.splitlines()[0] == "Longest silent gap: 7.2 s (of a 9 s run, 3 gaps)"
    assert "after: second" in text and "first" not in text


def test_stamped_lines_round_trip_and_carriage_returns_split_a_progress_bar(monkeypatch):
    clock = iter([10.0, 10.5, 11.0, 14.0, 20.0])
    monkeypatch.setattr(gaps.time, "monotonic", lambda: next(clock))
    out, echo = io.StringIO(), io.StringIO()
    events = list(gaps.stamped(io.StringIO("a\rb\n\nc\n"), out, echo))
    assert events == [(0.5, "a"), (1.0, "b"), (4.0, "c"), (10.0, "(end of the input)")]
    assert echo.getvalue() == "a\nb\nc\n"
    assert list(gaps.read_stamped(out.getvalue().splitlines())) == events[:-1]


def test_the_limit_fails_a_run_with_a_longer_silence(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("[ 0.50] a\n[ 7.00] b\n")
    assert gaps.main(["--log", str(log), "--limit", "5"]) == 1
    assert gaps.main(["--log", str(log), "--limit", "7"]) == 0
    assert "Longest silent gap: 6.5 s" in capsys.readouterr().out
