"""``python -m engine worker``: run one job from stdin, report on stdout (see engine.protocol)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
from typing import IO, Any

import engine
from engine.errors import Cancelled, EngineError
from engine.progress import JsonLinesReporter
from engine.protocol import PROTOCOL_VERSION
from engine.threads import apply_default_threads


def _raise_cancelled(signum, frame):
    raise Cancelled(f"cancelled by signal {signum}")


def read_job(stream: IO[str]) -> dict[str, Any]:
    text = stream.read()
    if not text.strip():
        raise EngineError("The worker received no job on its standard input: send one JSON object.")
    try:
        job = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError(f"The job is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(job, dict) or "operation" not in job:
        raise EngineError('The job must be a JSON object with an "operation" and its "params".')
    version = job.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise EngineError(
            f"The job uses worker protocol {version}, this engine speaks {PROTOCOL_VERSION}: "
            "update the plugin and the engine together."
        )
    return job


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
    signal.signal(signal.SIGTERM, _raise_cancelled)
    reporter.send({"type": "hello", "protocol": PROTOCOL_VERSION, "engine": engine.__version__})
    try:
        check_environment()
        job = read_job(stdin)
        if job.get("threads"):
            import torch

            torch.set_num_threads(int(job["threads"]))
        else:
            apply_default_threads()
        from engine.api import build_params, get_operation

        op = get_operation(str(job["operation"]))
        result = op.run(build_params(op, job.get("params", {})), reporter)
        outputs = {name: result[name] for name in op.outputs if result.get(name)}
        reporter.send({"type": "result", "outputs": outputs, "result": result})
        return 0
    except EngineError as exc:
        reporter.send({"type": "error", "kind": "input", "message": str(exc)})
    except (Cancelled, KeyboardInterrupt):
        reporter.send({"type": "error", "kind": "cancelled", "message": "Cancelled; no output was written."})
    except MemoryError:
        reporter.send({
            "type": "error", "kind": "internal",
            "message": "The engine ran out of memory: use a smaller tile size or batch size.",
        })
    except Exception as exc:  # the person sees a summary; the traceback travels as detail
        reporter.send({
            "type": "error", "kind": "internal",
            "message": f"Internal engine error: {type(exc).__name__}: {exc}",
            "detail": traceback.format_exc(),
        })
    return 1
