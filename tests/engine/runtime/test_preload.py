"""engine.runtime.preload: imports started in a background thread, failures left to their user."""

import sys

from engine.runtime.preload import preload


def test_preload_imports_in_a_thread_and_skips_what_fails(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    thread = preload("no_such_module_for_the_test", "colorsys")
    thread.join(30)
    assert not thread.is_alive() and thread.daemon
    assert "colorsys" in sys.modules and "no_such_module_for_the_test" not in sys.modules
