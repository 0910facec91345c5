"""One registry of engine operations, shared by the Python API, the CLI and the worker.

An operation is a function ``run(params, reporter) -> dict`` plus a dataclass of
parameters. The CLI builds its arguments from the dataclass fields, the worker
builds the dataclass from the job's ``params`` object, and the QGIS algorithms
send the same names: one set of parameter names for every front end.

Field metadata understood by the CLI:
    help (str): the text shown by ``--help``;
    positional (bool): a positional argument instead of ``--flag``;
    role ("input"): a file the operation reads. Outputs are ``Operation.outputs``;
        a ``str | dict`` field takes a job or a raster. ``run_operation`` refuses
        any output that is also an input or another output (operation_paths, then
        engine.io.collisions.check_distinct).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.convert import Wording, from_dict, unwrap_optional  # noqa: F401 - unwrap_optional: the CLI's
from engine.errors import EngineError
from engine.io.collisions import NamedPath, PathRoles, check_distinct, job_files
from engine.runtime.progress import Reporter


@dataclass(frozen=True)
class Operation:
    name: str
    summary: str
    params: type
    run: Callable[[Any, Reporter], dict[str, Any]]
    description: str = ""
    # Output parameter names: the worker and the plugin know which results are files.
    outputs: tuple[str, ...] = ()


_REGISTRY: dict[str, Operation] = {}

# Modules that define operations; imported lazily so that `python -m engine version`
# does not pay for torch.
OPERATION_MODULES = (
    "engine.ops.raster_ops",
    "engine.ops.probe_ops",
    "engine.ops.area_ops",
    "engine.ops.assess_ops",
    "engine.ops.change_ops",
    "engine.ops.demo_ops",
    "engine.ops.map_ops",
    "engine.ops.parcel_ops",
    "engine.ops.models_ops",
    "engine.ops.anysat_ops",
    "engine.ops.fetch_ops",
    "engine.bench",
)
# A package beside the engine registers its own operations in a module of this name; the engine
# finds it by looking, so it names no such package (the trainer's learn-area comes this way).
PROVIDER_MODULE = "engine_operations"


def operation(name: str, params: type, summary: str, outputs: tuple[str, ...] = ()):
    """Register ``run(params, reporter)`` as the operation ``name``."""

    def register(run: Callable[[Any, Reporter], dict[str, Any]]):
        if name in _REGISTRY:
            raise RuntimeError(f"operation {name!r} registered twice")
        _REGISTRY[name] = Operation(
            name=name,
            summary=summary,
            params=params,
            run=run,
            description=(run.__doc__ or summary).strip(),
            outputs=outputs,
        )
        return run

    return register


def provider_modules() -> list[str]:
    """The PROVIDER_MODULE of every package that sits beside the engine (the repository or the plugin folder)."""
    beside = Path(__file__).resolve().parents[2]
    return [
        f"{package.name}.{PROVIDER_MODULE}"
        for package in sorted(beside.iterdir())
        if (package / "__init__.py").is_file() and (package / f"{PROVIDER_MODULE}.py").is_file()
    ]


def operations() -> dict[str, Operation]:
    for module in (*OPERATION_MODULES, *provider_modules()):
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_operation(name: str) -> Operation:
    ops = operations()
    if name not in ops:
        raise EngineError(f"Unknown operation {name!r}. Available operations: {', '.join(sorted(ops))}.")
    return ops[name]


def field_types(params: type) -> dict[str, Any]:
    return typing.get_type_hints(params)


# Operation parameters in the words of the CLI, the worker and the plugin.
PARAMETERS = Wording(
    label="Parameter {key!r}",
    unknown="Unknown parameter(s) for {where!r}: {keys}. Known: {allowed}.",
    missing="Missing required parameter {key!r} for {where!r}.",
    not_mapping="The parameters of {where!r} must be a JSON object.",
)


def build_params(op: Operation, values: dict[str, Any]):
    """Build the operation's parameter dataclass from a plain dict, with clear errors."""
    return from_dict(op.params, values, op.name, PARAMETERS)


def _accepts_job(annotation: Any) -> bool:
    return dict in typing.get_args(annotation)


def operation_paths(op: Operation, params) -> PathRoles:
    """The roles of an operation's path parameters (its outputs, its inputs, the files inside its
    jobs), for check_distinct."""
    from engine.io.job import is_job, load_job  # lazy: keeps numpy out of `python -m engine version`

    hints = typing.get_type_hints(type(params))
    roles = PathRoles()
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value in (None, "", [], ()):
            continue
        if f.name in op.outputs:
            roles.outputs.append(NamedPath(f.name, str(value)))
        elif _accepts_job(hints[f.name]) and is_job(value):
            if not isinstance(value, dict) and not str(value).strip().startswith("{"):
                roles.inputs.append(NamedPath(f.name, str(value)))
            roles.extend(job_files(load_job(value), f.name))
        elif f.metadata.get("role") == "input" or _accepts_job(hints[f.name]):
            for path in value if isinstance(value, (list, tuple)) else [value]:
                roles.inputs.append(NamedPath(f.name, str(path)))
    return roles


def run_operation(name: str, values: dict[str, Any], reporter: Reporter | None = None) -> dict[str, Any]:
    """Run an operation by name with plain-dict parameters: the one entry of the Python API,
    the command line and the worker."""
    from engine.io.raster import damaged_rasters  # lazy: keeps rasterio out of `python -m engine version`

    op = get_operation(name)
    params = build_params(op, values)
    roles = operation_paths(op, params)
    check_distinct(roles)
    with damaged_rasters([source.path for source in roles.inputs]):
        return op.run(params, reporter or Reporter())
