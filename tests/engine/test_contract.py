"""engine/contract.py is the one contract between the engine and the plugin: standard library only,
loaded by both, and not redefined anywhere else (AST scan of engine/, training/ and omnisat_qgis/)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "engine" / "contract.py"
SHARED_NAMES = {"PROTOCOL_VERSION", "PROBE_FORMAT", "CHECKPOINT_FORMAT", "MAX_HEADER_BYTES"}
SHARED_VALUES = {"omnisat-probe", "omnisat-qgis-checkpoint"}
HELPERS = {"sha256_of", "file_sha256", "safetensors_metadata", "date_from_name", "parse_date", "date_from_tags"}


def sources() -> list[Path]:
    files = [f for d in ("engine", "training", "omnisat_qgis") for f in sorted((ROOT / d).rglob("*.py"))]
    return [f for f in files if f != CONTRACT]


def test_the_contract_imports_only_the_standard_library():
    for node in ast.walk(ast.parse(CONTRACT.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names | {"__future__"}, name


def test_engine_and_plugin_read_the_same_module():
    import engine.contract as engine_contract
    from engine.io import download
    from engine.probes import probe_file
    from engine.runtime import protocol
    from omnisat_qgis import worker_client
    from omnisat_qgis.contract import contract as plugin_contract

    assert Path(plugin_contract.__file__).resolve() == CONTRACT
    assert protocol.PROTOCOL_VERSION == engine_contract.PROTOCOL_VERSION == worker_client.PROTOCOL_VERSION
    assert probe_file.PROBE_FORMAT == plugin_contract.PROBE_FORMAT
    assert download.sha256_of is engine_contract.sha256_of
    for name in SHARED_NAMES | (HELPERS - {"file_sha256"}):
        assert getattr(plugin_contract, name) is not None and hasattr(engine_contract, name), name


def test_the_plugin_reads_headers_and_dates_through_the_contract(tmp_path):
    import datetime as dt

    from omnisat_qgis.contract import contract
    from omnisat_qgis.model_catalog import CatalogError, read_header

    bad = tmp_path / "not.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CatalogError, match="not a safetensors checkpoint"):
        read_header(bad)
    assert contract.date_from_name("S2B_MSIL2A_20200102T103421_N0213") == dt.date(2020, 1, 2)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_redefines_the_contract(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in SHARED_NAMES:
                    assert not isinstance(node.value, ast.Constant), f"{path}:{node.lineno} redefines {target.id}"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.name not in HELPERS or path.name == "dates.py" and node.name == "parse_date", (
                f"{path}:{node.lineno} defines {node.name} again (engine/contract.py has it)"
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in SHARED_VALUES, f"{path}:{node.lineno} spells {node.value!r} (use the contract)"
            assert node.value != "<Q", f"{path}:{node.lineno} reads a safetensors header itself"


def test_the_plugin_never_puts_the_engine_on_sys_path():
    for path in (ROOT / "omnisat_qgis").rglob("*.py"):
        if path.name == "bench_preview.py":  # a benchmark script run by the engine's Python, not by QGIS
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("append", "insert")
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "path"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "sys"
            ):
                pytest.fail(f"{path}:{node.lineno} changes sys.path")
