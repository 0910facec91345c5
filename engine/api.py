"""One registry of engine operations, shared by the Python API, the CLI and the worker.

An operation is a function ``run(params, reporter) -> dict`` plus a dataclass of
parameters. The CLI builds its arguments from the dataclass fields, the worker
builds the dataclass from the job's ``params`` object, and the QGIS algorithms
send the same names: one set of parameter names for every front end.

Field metadata understood by the CLI:
    help (str): the text shown by ``--help``;
    positional (bool): a positional argument instead of ``--flag``.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from engine.errors import EngineError
from engine.progress import Reporter


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
    "engine.ops.demo_ops",
    "engine.ops.map_ops",
    "engine.ops.models_ops",
    "engine.ops.anysat_ops",
    "engine.bench",
)


def operation(name: str, params: type, summary: str, outputs: tuple[str, ...] = ()):
    """Register ``run(params, reporter)`` as the operation ``name``."""

    def register(run: Callable[[Any, Reporter], dict[str, Any]]):
        if name in _REGISTRY:
            raise RuntimeError(f"operation {name!r} registered twice")
        _REGISTRY[name] = Operation(
            name=name, summary=summary, params=params, run=run,
            description=(run.__doc__ or summary).strip(), outputs=outputs,
        )
        return run

    return register


def operations() -> dict[str, Operation]:
    for module in OPERATION_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_operation(name: str) -> Operation:
    ops = operations()
    if name not in ops:
        raise EngineError(
            f"Unknown operation {name!r}. Available operations: {', '.join(sorted(ops))}."
        )
    return ops[name]


def field_types(params: type) -> dict[str, Any]:
    return typing.get_type_hints(params)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Return (inner type, is_optional) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    inner, optional = unwrap_optional(annotation)
    if value is None:
        if optional:
            return None
        raise EngineError(f"Parameter {name!r} must not be empty.")
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(inner) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise EngineError(f"Parameter {name!r} must be a list, got {value!r}.")
        items = [_coerce(name, v, item_type) for v in value]
        return items if origin is list else tuple(items)
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise EngineError(f"Parameter {name!r} must be true or false, got {value!r}.")
    if inner in (int, float):
        if isinstance(value, bool):
            raise EngineError(f"Parameter {name!r} must be a number, got {value!r}.")
        try:
            number = inner(value)
        except (TypeError, ValueError):
            raise EngineError(f"Parameter {name!r} must be {inner.__name__}, got {value!r}.") from None
        if inner is int and isinstance(value, float) and value != number:
            raise EngineError(f"Parameter {name!r} must be a whole number, got {value!r}.")
        return number
    if inner is str:
        return str(value)
    return value


def build_params(op: Operation, values: dict[str, Any]):
    """Build the operation's parameter dataclass from a plain dict, with clear errors."""
    if not isinstance(values, dict):
        raise EngineError(f"The parameters of {op.name!r} must be a JSON object.")
    fields = {f.name: f for f in dataclasses.fields(op.params)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EngineError(
            f"Unknown parameter(s) for {op.name!r}: {', '.join(unknown)}. "
            f"Known: {', '.join(fields)}."
        )
    hints = field_types(op.params)
    kwargs = {}
    for name, field in fields.items():
        if name in values:
            kwargs[name] = _coerce(name, values[name], hints[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise EngineError(f"Missing required parameter {name!r} for {op.name!r}.")
    return op.params(**kwargs)


def run_operation(name: str, values: dict[str, Any], reporter: Reporter | None = None) -> dict[str, Any]:
    """The Python API: run an operation by name with plain-dict parameters."""
    op = get_operation(name)
    return op.run(build_params(op, values), reporter or Reporter())
