"""The skip budget (tests/conftest.py): strict in `.ci/run`, a report elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOKS = (
    "from tests.conftest import (pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish,\n"
    "                            pytest_terminal_summary)\n"
)


def run(folder: Path, tests: dict[str, str], strict: bool) -> subprocess.CompletedProcess:
    (folder / "conftest.py").write_text(HOOKS)
    for name, code in tests.items():
        (folder / name).write_text("import pytest\n\n" + code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMNISAT_SKIP_BUDGET", None)
    if strict:
        env["OMNISAT_SKIP_BUDGET"] = "strict"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder), str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


SOME_SKIPS = {
    "test_a.py": "def test_runs():\n    pass\n\n\ndef test_needs_data():\n"
    "    pytest.skip('real sample data not found at ../shared/data')\n\n\n"
    "def test_on_gpu():\n    pytest.skip('a CUDA GPU is present')\n",
    "test_b.py": "pytest.importorskip('a_package_that_is_not_installed')\n\n\ndef test_x():\n    pass\n",
}


def test_a_clone_without_the_shared_data_passes_and_reports_its_skips(tmp_path):
    done = run(tmp_path, SOME_SKIPS, strict=False)
    assert done.returncode == 0, done.stdout
    assert "skipped: test_a.py::test_needs_data: real sample data not found" in done.stdout
    assert "skipped: test_b.py: could not import 'a_package_that_is_not_installed'" in done.stdout
    assert "'a CUDA GPU is present'" in done.stdout  # the allow-list is printed


def test_ci_fails_on_a_skip_not_on_the_list(tmp_path):
    done = run(tmp_path, SOME_SKIPS, strict=True)
    assert done.returncode == 1, done.stdout
    assert "NOT ALLOWED: test_a.py::test_needs_data: real sample data not found" in done.stdout
    assert "NOT ALLOWED: test_b.py: could not import" in done.stdout
    assert "test_on_gpu" not in done.stdout.split("skip budget")[-1]  # on the list: allowed
    assert "2 test(s) skipped for a reason not on the list: the run fails" in done.stdout


def test_ci_passes_with_allowed_skips_only(tmp_path):
    done = run(
        tmp_path,
        {"test_a.py": "def test_runs():\n    pass\n\n\ndef test_on_gpu():\n    pytest.skip('a CUDA GPU is present')\n"},
        strict=True,
    )
    assert done.returncode == 0, done.stdout
    assert "1 skipped; allowed reasons" in done.stdout
