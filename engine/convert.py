"""Plain mappings (JSON, YAML, the command line) to typed dataclasses, with one clear error per mistake.

The one converter behind training configs (training.config), operation parameters
(engine.runtime.registry) and the job format (engine.io.job). Types come from the dataclass's
annotations: nested dataclasses, lists, fixed tuples, dicts, optional and union types
(the arm matching the value's kind), bool, int (whole numbers only), float, str. A
field's metadata may add ``choices`` (allowed values), ``positive`` (a number > 0) and
``minimum`` (a number at least this). Each front end names its keys in its own words
(``Wording``): "Config key config.optim.lr", "Parameter 'l2'", "The job 'x.json': 'overlap'".
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError


@dataclass(frozen=True)
class Wording:
    """The messages of one front end. Fields: ``where`` (the mapping being read), ``key`` (one key),
    ``keys`` (all unknown or missing keys), ``hint`` (a close known key), ``allowed`` (the known keys)."""

    label: str = "Config key {where}.{key}"  # names one key in type errors
    unknown: str = "Unknown config key {key!r} in {where}.{hint} Allowed keys there: {allowed}."
    missing: str = "Missing required config key {where}.{key}."
    not_mapping: str = "{where} must be a mapping of keys to values, got {value!r}."
    nested: str = "{where}.{key}"  # the ``where`` of a nested mapping


CONFIG = Wording()


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Return (inner type, is_optional) for ``X | None`` / ``Optional[X]`` (unions of more arms stay whole)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        union = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 - built at run time from a list
        return union, optional
    return annotation, False


def _arm(value: Any, arms: tuple) -> Any:
    """The arm of a union that takes ``value``: by its kind (mapping, list, scalar)."""

    def kind(annotation) -> str:
        origin = typing.get_origin(annotation) or annotation
        if dataclasses.is_dataclass(origin) or origin is dict:
            return "mapping"
        return "list" if origin in (list, tuple) else "scalar"

    wanted = "mapping" if isinstance(value, dict) else "list" if isinstance(value, (list, tuple)) else "scalar"
    return next((a for a in arms if kind(a) == wanted), arms[0])


def _number(value: Any, annotation: type, label: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise EngineError(f"{label} must be a number, got {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise EngineError(f"{label} must be a number, got {value!r}.") from None
    if annotation is int:
        if number != int(number):
            raise EngineError(f"{label} must be a whole number, got {value!r}.")
        return int(number)
    return number


def convert(value: Any, annotation: Any, label: str, where: str = "", wording: Wording = CONFIG) -> Any:
    """``value`` as ``annotation``; ``label`` names it in errors, ``where`` is its path for nested mappings."""
    annotation, optional = unwrap_optional(annotation)
    if annotation is Any:
        return value
    if value is None:
        if optional:
            return None
        if annotation is str:
            return ""
        raise EngineError(f"{label} must not be empty.")
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = _arm(value, typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return value if isinstance(value, annotation) else from_dict(annotation, value, where, wording)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise EngineError(f"{label} must be a list, got {value!r}.")
        args = typing.get_args(annotation) or (Any,)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [convert(v, args[0], label, f"{where}.{i}", wording) for i, v in enumerate(value)]
        elif len(value) != len(args):
            raise EngineError(f"{label} must be a list of {len(args)} values, got {value!r}.")
        else:
            items = [convert(v, a, label, f"{where}.{i}", wording) for i, (v, a) in enumerate(zip(value, args))]
        return items if origin is list else tuple(items)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise EngineError(f"{label} must be a mapping, got {value!r}.")
        args = typing.get_args(annotation)
        if len(args) == 2:
            return {
                k: convert(v, args[1], label, wording.nested.format(where=where, key=k), wording)
                for k, v in value.items()
            }
        return dict(value)
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise EngineError(f"{label} must be true or false, got {value!r}.")
        return value
    if annotation in (int, float):
        return _number(value, annotation, label)
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise EngineError(f"{label} must be text, got {value!r}.")
        return str(value)
    return value


def _check(value: Any, metadata: typing.Mapping, label: str) -> None:
    """The checks a field's metadata adds."""
    if value is None:
        return
    if "choices" in metadata and value not in metadata["choices"]:
        raise EngineError(f"{label} must be one of {', '.join(metadata['choices'])}, got {value!r}.")
    if metadata.get("positive") and value <= 0:
        raise EngineError(f"{label} must be positive, got {value!r}.")
    if "minimum" in metadata and value < metadata["minimum"]:
        raise EngineError(f"{label} must be at least {metadata['minimum']}, got {value!r}.")


def from_dict(cls: type, data: Any, where: str = "config", wording: Wording = CONFIG, **given: Any):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and naming every mistake.

    ``given``: values of fields that are not read from the mapping (set by the caller)."""
    if not isinstance(data, dict):
        raise EngineError(wording.not_mapping.format(where=where, value=data))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    allowed = list(fields)
    unknown = [str(k) for k in data if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        raise EngineError(
            wording.unknown.format(
                where=where,
                key=unknown[0],
                keys=", ".join(sorted(unknown)),
                allowed=", ".join(allowed),
                hint=f" Did you mean {close[0]!r}?" if close else "",
            )
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise EngineError(wording.missing.format(where=where, key=missing[0], keys=", ".join(repr(m) for m in missing)))
    hints = typing.get_type_hints(cls)
    kwargs = dict(given)
    for name in data:
        label = wording.label.format(where=where, key=name)
        kwargs[name] = convert(data[name], hints[name], label, wording.nested.format(where=where, key=name), wording)
        _check(kwargs[name], fields[name].metadata, label)
    return cls(**kwargs)
