"""The default thread count: the user's setting wins, else the cores free now."""

import os

import pytest

from engine.errors import EngineError
from engine.runtime.threads import apply_default_threads, busy_cores, choose_threads, usable_cpus


@pytest.mark.parametrize(
    "cores, busy, expected",
    [
        (2, 0.0, 2),  # quiet machine: every core
        (2, 0.3, 2),  # a background blip keeps both
        (2, 0.6, 1),  # more than half a core busy: one thread fewer
        (2, 1.6, 1),  # nearly saturated: one thread, never zero
        (2, 7.5, 1),  # heavily oversubscribed
        (16, 3.2, 13),
        (1, 0.0, 1),
    ],
)
def test_free_cores_rounded_half_up_between_one_and_all(cores, busy, expected):
    assert choose_threads(None, cores, busy) == expected


def test_the_users_setting_wins_even_beyond_the_free_cores():
    assert choose_threads(4, cores=2, busy=2.0) == 4
    assert choose_threads(1, cores=16, busy=0.0) == 1


def test_a_setting_below_one_is_refused_with_the_fix():
    with pytest.raises(EngineError, match="leave it unset"):
        choose_threads(0, cores=2, busy=0.0)


def test_busy_cores_is_within_the_usable_cores():
    cpus = usable_cpus()
    assert cpus and 0.0 <= busy_cores(cpus, seconds=0.02) <= len(cpus) + 1e-9


def test_omp_num_threads_set_by_the_user_stands(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert apply_default_threads() is None
    assert os.environ["OMP_NUM_THREADS"] == "3"
