"""``python -m engine worker``: run one job from stdin, report on stdout (see engine.protocol)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from typing import IO

import engine
from engine.errors import Cancelled, EngineError, cancel_on_termination, termination_requested
from engine.progress import JsonLinesReporter
from engine.protocol import PROTOCOL_VERSION, Request, parse_request
from engine.threads import apply_default_threads


def read_job(stream: IO[str]) -> Request:
    text = stream.read()
    if not text.strip():
        raise EngineError("The worker received no job on its standard input: send one JSON object.")
    try:
        job = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError(f"The job is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    return parse_request(job)


REQUIRED_MODULES = ("numpy", "torch", "rasterio")


def check_environment() -> None:
    """Fail early, and clearly, when this interpreter lacks the engine's requirements."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineError(
            f"The worker Python '{sys.executable}' lacks {', '.join(missing)}: point the plugin's "
            "'OmniSat worker Python' setting (or OMNISAT_PYTHON) at the project's environment "
            "(.venv), or install the engine's requirements into this one."
        )


def run_worker(stdin: IO[str] = sys.stdin, stdout: IO[str] | None = None) -> int:
    # Keep the real stdout for the protocol; anything else printed goes to stderr.
    protocol_stream = stdout or os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    reporter = JsonLinesReporter(protocol_stream)
    cancel_on_termination()
    reporter.send({"type": "hello", "protocol": PROTOCOL_VERSION, "engine": engine.__version__})
    try:
        check_environment()
        request = read_job(stdin)
        if request.threads:
            import torch

            torch.set_num_threads(request.threads)
        else:
            apply_default_threads()
        from engine.api import get_operation, run_operation

        op = get_operation(request.operation)
        result = run_operation(op.name, request.params, reporter)
        outputs = {name: result[name] for name in op.outputs if result.get(name)}
        reporter.send({"type": "result", "outputs": outputs, "result": result})
        return 0
    except (Cancelled, KeyboardInterrupt):
        reporter.send(CANCELLED)
    except Exception as exc:
        reporter.send(CANCELLED if termination_requested() else failure_message(exc))
    return 1


CANCELLED = {"type": "error", "kind": "cancelled", "message": "Cancelled; no output was written."}


def failure_message(exc: Exception) -> dict:
    """The error message for a failure that is not a cancel."""
    if isinstance(exc, EngineError):
        return {"type": "error", "kind": "input", "message": str(exc)}
    if isinstance(exc, MemoryError):
        return {
            "type": "error", "kind": "internal",
            "message": "The engine ran out of memory: use a smaller tile size or batch size.",
        }
    # the person sees a summary; the traceback travels as detail
    return {
        "type": "error", "kind": "internal",
        "message": f"Internal engine error: {type(exc).__name__}: {exc}",
        "detail": traceback.format_exc(),
    }
