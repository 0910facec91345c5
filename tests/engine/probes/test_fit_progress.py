"""Progress from inside a classifier's fit (engine.runtime.progress.report_within): every kind tells
how far it is while it runs, chunked tree ensembles equal one fit, a cancel stops a fit at its next
report, and a counter turns those reports into throttled progress with the time left."""

import os
import signal

import numpy as np
import pytest

from engine import errors
from engine.errors import Cancelled, cancel_on_termination
from engine.probes.classifiers import ProbeConfig, fit_probe
from engine.probes.classifiers import trees as tree_module
from engine.runtime import progress as progress_module
from engine.runtime.progress import Reporter, listening, report_within, share_of_step


def data(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, y


@pytest.mark.parametrize(
    "config",
    [
        ProbeConfig(kind="linear", epochs=30),
        ProbeConfig(kind="mlp", optimizer="adam", epochs=5),
        ProbeConfig(kind="random_forest", trees=35),
        ProbeConfig(kind="extra_trees", trees=35),
        ProbeConfig(kind="gradient_boosting", trees=25),
    ],
    ids=lambda c: f"{c.kind}-{c.optimizer}",
)
def test_every_kind_reports_its_share_done_while_it_fits(config):
    x, y = data()
    shares = []
    with listening(shares.append):
        model = fit_probe(x, y, 3, config)
    assert len(shares) >= 3, shares
    assert shares == sorted(shares) and 0 <= shares[0] and shares[-1] <= 1
    if config.kind in ("random_forest", "extra_trees", "gradient_boosting"):
        # grown CHUNK trees (rounds) at a time: one report per chunk, the last at the whole
        t, chunk = config.trees, tree_module.CHUNK
        assert shares == [min(k, t) / t for k in range(chunk, t + chunk, chunk)]
    predicted = []
    with listening(predicted.append):
        model.predict_proba(x)
    if config.kind not in ("linear", "mlp"):  # one matrix product: nothing to report
        assert predicted and predicted[-1] == 1.0


def test_knn_reports_its_batches_while_it_predicts():
    x, y = data(n=5000)
    model = fit_probe(x, y, 3, ProbeConfig(kind="knn"))
    shares = []
    with listening(shares.append):
        model.predict_proba(x)
    assert shares == [i / 5000 for i in range(0, 5000, 2048)]


@pytest.mark.parametrize("kind", ["random_forest", "extra_trees", "gradient_boosting"])
def test_trees_grown_in_chunks_equal_one_fit(kind, monkeypatch):
    x, y = data()
    config = ProbeConfig(kind=kind, trees=23)
    chunked = fit_probe(x, y, 3, config).predict_proba(x)
    monkeypatch.setattr(tree_module, "CHUNK", 1000)  # every tree in one fit
    whole = fit_probe(x, y, 3, config).predict_proba(x)
    np.testing.assert_array_equal(chunked, whole)


def test_a_termination_signal_stops_a_fit_at_its_next_report(monkeypatch):
    """SIGTERM's handler raises Cancelled between Python bytecodes: a forest growing in chunks stops
    after the chunk during which the signal came, not after all its trees."""
    monkeypatch.setattr(errors, "_termination_signal", None)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    cancel_on_termination()
    shares = []

    def listener(share):
        shares.append(share)
        if len(shares) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    x, y = data()
    try:
        with listening(listener), pytest.raises(Cancelled):
            fit_probe(x, y, 3, ProbeConfig(kind="random_forest", trees=200))
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGHUP, before[1])
        monkeypatch.setattr(errors, "_termination_signal", None)
    assert shares == [10 / 200]


class Recorder(Reporter):
    def __init__(self):
        self.events = []

    def progress(self, percent, message=""):
        self.events.append((round(percent, 3), message))


def test_a_counter_sends_reports_from_inside_a_step_throttled_with_the_time_left(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    recorder = Recorder()
    steps = recorder.steps(4, "Fitting", 0, 100)
    with steps.part():
        clock[0] = 1.0
        report_within(0.5)  # sent
        clock[0] = 1.2
        report_within(0.6)  # within WITHIN_EVERY_S of the last: dropped
        clock[0] = 2.0
        with share_of_step(0.5, 1.0):
            report_within(0.5)  # the second half's middle: 75% of the step
    clock[0] = 2.5
    steps.count()
    with steps.part("Second"):
        clock[0] = 3.8
        report_within(0.2)
    assert recorder.events == [
        (12.5, "Fitting (1/4, 50%)"),
        (18.75, "Fitting (1/4, 75%)"),
        (25.0, "Fitting (1/4), about 8 s left"),
        (30.0, "Second (2/4, 20%), about 9 s left"),
    ]
    report_within(0.9)  # outside any step: nobody listens, nothing sent
    assert len(recorder.events) == 4
