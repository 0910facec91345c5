"""``python -m engine <command>``: the engine's command line.

Every operation of engine.runtime.registry is a command whose options are its parameters.
``--json`` prints the result as JSON on stdout; otherwise a readable summary.
Errors the user can fix print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from typing import Any

import engine
from engine.errors import Cancelled, EngineError, cancel_on_termination, termination_requested
from engine.runtime import registry
from engine.runtime.progress import TerminalReporter
from engine.runtime.protocol import PROTOCOL_VERSION
from engine.runtime.registry import field_types, get_operation, operations, unwrap_optional
from engine.runtime.threads import apply_default_threads
from engine.runtime.worker import run_worker


def _version(as_json: bool) -> int:
    info = {"engine": engine.__version__, "protocol": PROTOCOL_VERSION, "python": sys.version.split()[0]}
    print(json.dumps(info) if as_json else f"omnisat engine {info['engine']} (worker protocol {PROTOCOL_VERSION})")
    return 0


def _add_param_arguments(parser: argparse.ArgumentParser, params: type) -> None:
    hints = field_types(params)
    for field in dataclasses.fields(params):
        inner, _ = unwrap_optional(hints[field.name])
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else (field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        )
        help_text = field.metadata.get("help", "")
        if has_default and default not in (None, [], ()):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%")}  # argparse formats help with %
        origin = typing.get_origin(inner)
        if origin in (list, tuple):
            kwargs["nargs"] = "+"
            kwargs["type"] = (typing.get_args(inner) or (str,))[0]
        elif inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif inner in (int, float, str):
            kwargs["type"] = inner
        if field.metadata.get("positional"):
            if has_default:
                kwargs["nargs"] = "?"
            parser.add_argument(field.name, default=default, **kwargs)
        else:
            flag = "--" + field.name.replace("_", "-")
            parser.add_argument(flag, dest=field.name, default=default, required=not has_default, **kwargs)


def plain(text: str, params: type | None = None) -> str:
    """A docstring as ``--help`` shows it: dedented, without reStructuredText markup, and without the
    pointers to engine modules that are meant for developers. A parameter's name in double backquotes
    becomes its option (``minutes`` -> --minutes)."""
    fields = {f.name: f for f in dataclasses.fields(params)} if params else {}

    def literal(match: re.Match) -> str:
        name = match.group(1)
        field = fields.get(name)
        if field is None or field.metadata.get("positional"):
            return name
        return "--" + name.replace("_", "-")

    text = re.sub(r"``([^`]+)``", literal, inspect.cleandoc(text))
    text = re.sub(r"\s*\((?:see )?engine[./][\w./, ]*\)", "", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _compact_json(obj: dict[str, Any]) -> str:
    """JSON with one line per key, and per entry of a mapping of mappings (the modalities)."""

    def entry(key: str, value: Any, indent: str) -> str:
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            inner = ",\n".join(entry(k, v, indent + "  ") for k, v in value.items())
            return f"{indent}{json.dumps(key)}: {{\n{inner}\n{indent}}}"
        return f"{indent}{json.dumps(key)}: {json.dumps(value)}"

    return "{\n" + ",\n".join(entry(k, v, "  ") for k, v in obj.items()) + "\n}"


def job_example() -> str:
    """The epilog of the commands that take a job: one example instead of a pointer to the code."""
    from engine.io.job import EXAMPLE_JOB  # lazy: the job format imports einops, which the worker checks for first

    keys = (
        '"model": a catalog name (python -m engine models) or a checkpoint file. Optional per modality: '
        '"dates" (else read from the file names or metadata), "bands" (1-based, null for a band the files '
        'lack), "mask" (cloud masks), "scale" (e.g. reflectance_to_dn). Optional for the run: "crs", '
        '"resolution", "patch_size", "tile_size", "overlap" (metres), "batch_size", "precision", "threads", '
        '"ranks", "normalization" (a file from normalization-stats). Outputs: "classes", "confidence", '
        '"probabilities", "embeddings" (with "embeddings_level": patch, local, both, dense or tile). An '
        'embeddings raster written by embed can stand in for a job wherever a command takes "embeddings". '
        "Unknown keys are refused."
    )
    return (
        "Example job (JSON; paths relative to the job file's folder):\n\n"
        + _compact_json(EXAMPLE_JOB)
        + "\n\n"
        + textwrap.fill(keys, 100)
    )


def _takes_job(params: type) -> bool:
    # a ``str | dict`` field takes a job (engine.runtime.registry)
    return any(
        typing.get_origin(t) in (typing.Union, types.UnionType) and dict in typing.get_args(t)
        for t in field_types(params).values()
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="OmniSat engine: multimodal Earth-observation models, raster I/O and tiled inference.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "version",
        help="print the engine and protocol versions",
        description="Print the engine and worker-protocol versions.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "worker",
        help="run one JSON job from stdin (or one per line with --serve), report JSON lines on stdout",
        description=plain(sys.modules["engine.runtime.protocol"].__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--serve", action="store_true", help="serve one job per line of stdin until it closes")
    for op in sorted(operations().values(), key=lambda o: o.name):
        p = sub.add_parser(
            op.name,
            help=op.summary.replace("%", "%%"),
            description=plain(op.description, op.params).replace("%", "%%"),
            epilog=job_example().replace("%", "%%") if _takes_job(op.params) else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_param_arguments(p, op.params)
        p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return parser


def _print_text(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            print(f"{key}:")
            print("  " + json.dumps(value, indent=2, default=str).replace("\n", "\n  "))
        else:
            print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Fast paths that need no operation modules (and so no torch).
    if argv[:1] == ["version"] and not {"-h", "--help"} & set(argv):
        return _version("--json" in argv)
    if argv[:1] == ["worker"] and not {"-h", "--help"} & set(argv):
        return run_worker(serve="--serve" in argv)
    if argv and not argv[0].startswith("-") and not {"-h", "--help", "--quiet"} & set(argv):
        # Said before the operation modules load (NumPy, rasterio, GDAL, and PyTorch where an operation
        # starts with a model): until then a long command is silent, on a loaded machine for seconds.
        print(f"{argv[0]}: loading the engine", file=sys.stderr, flush=True)
    parser = build_parser()
    args = parser.parse_args(argv)

    op = get_operation(args.command)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(op.params)}
    reporter = TerminalReporter(quiet=args.quiet)
    cancel_on_termination()
    apply_default_threads()  # a job's or --threads' own count, applied later, wins
    try:
        result = registry.run_operation(op.name, values, reporter)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, (Cancelled, KeyboardInterrupt)) or termination_requested():
            print("cancelled: no output was written", file=sys.stderr)
            return 130
        if isinstance(exc, EngineError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_text(result)
    return 0
