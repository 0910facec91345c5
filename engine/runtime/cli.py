"""``python -m engine <command>``: the engine's command line.

Every operation of engine.runtime.registry is a command whose options are its parameters.
``--json`` prints the result as JSON on stdout; otherwise a readable summary.
Errors the user can fix print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

import engine

from engine.errors import Cancelled, EngineError, cancel_on_termination, termination_requested
from engine.runtime.progress import TerminalReporter
from engine.runtime.protocol import PROTOCOL_VERSION
from engine.runtime import registry
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
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="OmniSat engine: multimodal Earth-observation models, raster I/O and tiled inference.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("version", help="print the engine and protocol versions", description="Print the engine and worker-protocol versions.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "worker", help="run one JSON job from stdin (or one per line with --serve), report JSON lines on stdout",
        description=(sys.modules["engine.runtime.protocol"].__doc__ or ""), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--serve", action="store_true", help="serve one job per line of stdin until it closes")
    for op in sorted(operations().values(), key=lambda o: o.name):
        p = sub.add_parser(op.name, help=op.summary.replace("%", "%%"), description=op.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
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
