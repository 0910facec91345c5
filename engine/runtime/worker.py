"""``python -m engine worker [--serve]``: run one job from stdin, or serve one job per line, reporting on
stdout (see engine.runtime.protocol)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import IO

import engine
from engine.errors import Cancelled, EngineError, cancel_on_termination, termination_requested
from engine.runtime import registry
from engine.runtime.progress import JsonLinesReporter
from engine.runtime.protocol import PROTOCOL_VERSION, Request, parse_request
from engine.runtime.threads import apply_default_threads


def read_job(stream: IO[str]) -> Request:
    return parse_job(stream.read())


def parse_job(text: str) -> Request:
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


def run_worker(stdin: IO[str] = sys.stdin, stdout: IO[str] | None = None, serve: bool = False) -> int:
    """One job read from ``stdin`` to its end; with ``serve``, one job per line until ``stdin`` closes
    (the plugin reuses the process: imports and kernel set-up are paid once)."""
    # Keep the real stdout for the protocol; anything else printed goes to stderr.
    protocol_stream = stdout or os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    reporter = JsonLinesReporter(protocol_stream)
    cancel_on_termination()
    reporter.send({"type": "hello", "protocol": PROTOCOL_VERSION, "engine": engine.__version__})
    if not serve:
        return 0 if run_job(lambda: read_job(stdin), reporter) is None else 1
    try:
        for line in stdin:
            if not line.strip():
                continue
            failure = run_job(lambda: parse_job(line), reporter)  # noqa: B023 - called before the next line is read
            # After a cancel (SIGTERM) or an internal error the process ends: the client starts a fresh one,
            # rather than reusing one whose state is unknown.
            if failure in ("cancelled", "internal"):
                return 1
    except (Cancelled, KeyboardInterrupt):  # stopped while waiting for a job: nothing to clean up
        return 1
    return 0


def run_job(read: Callable[[], Request], reporter: JsonLinesReporter) -> str | None:
    """Run the job ``read`` returns, ending with its result or error message; the error's kind, or None."""
    try:
        check_environment()
        request = read()
        if request.threads:
            import torch  # lazy: keeps torch out of --help

            torch.set_num_threads(request.threads)
        else:
            apply_default_threads()

        op = registry.get_operation(request.operation)
        result = registry.run_operation(op.name, request.params, reporter)
        outputs = {name: result[name] for name in op.outputs if result.get(name)}
        reporter.send({"type": "result", "outputs": outputs, "result": result})
        return None
    except (Cancelled, KeyboardInterrupt):
        message = CANCELLED
    except Exception as exc:
        message = CANCELLED if termination_requested() else failure_message(exc)
    reporter.send(message)
    return message["kind"]


CANCELLED = {"type": "error", "kind": "cancelled", "message": "Cancelled; no output was written."}


def failure_message(exc: Exception) -> dict:
    """The error message for a failure that is not a cancel."""
    if isinstance(exc, EngineError):
        return {"type": "error", "kind": "input", "message": str(exc)}
    if isinstance(exc, MemoryError):
        return {
            "type": "error",
            "kind": "internal",
            "message": "The engine ran out of memory: use a smaller tile size or batch size.",
        }
    # the person sees a summary; the traceback travels as detail
    return {
        "type": "error",
        "kind": "internal",
        "message": f"Internal engine error: {type(exc).__name__}: {exc}",
        "detail": traceback.format_exc(),
    }
