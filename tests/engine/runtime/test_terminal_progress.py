"""The CLI's reporter in a log file (not a terminal): progress shows as a line when a step runs long."""

import io

from engine.runtime.progress import TerminalReporter


def test_progress_becomes_a_line_after_a_quiet_spell(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("engine.runtime.progress.time.monotonic", lambda: clock[0])
    stream = io.StringIO()
    reporter = TerminalReporter(stream)
    reporter.log("Choosing among 10 candidates")
    clock[0] += 1.0
    reporter.progress(10.0, "fit 1 of 10")  # soon after the log line: nothing new
    clock[0] += TerminalReporter.LINE_EVERY_S
    reporter.progress(20.0, "fit 2 of 10, about 40 s left")
    clock[0] += 1.0
    reporter.progress(30.0, "fit 3 of 10")
    assert stream.getvalue().splitlines() == ["Choosing among 10 candidates", "[ 20.0%] fit 2 of 10, about 40 s left"]
    quiet = io.StringIO()
    TerminalReporter(quiet, quiet=True).progress(50.0, "x")
    assert quiet.getvalue() == ""
