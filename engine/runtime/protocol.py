"""The worker protocol: one JSON job on stdin, JSON lines on stdout.

Job (stdin, one JSON object)::

    {"protocol": 1, "operation": "normalized-index", "params": {...}, "threads": 2}

Messages (stdout, one JSON object per line, in this order)::

    {"type": "hello", "protocol": 1, "engine": "0.1.0"}           first, always
    {"type": "progress", "percent": 42.0, "message": "..."}      0..100
    {"type": "log", "level": "info|warning|error", "message": "..."}
    {"type": "result", "outputs": {...}, "result": {...}}        last, on success
    {"type": "error", "message": "...", "kind": "input|cancelled|internal",
     "detail": "traceback (internal errors only)"}                last, on failure

Serving (``python -m engine worker --serve``): the same hello once, then one job per line
of stdin, each answered by its messages up to its result or error; the worker exits when
stdin closes (status 0), and after a cancelled job or an internal error (status 1: the
client starts a fresh process for the next job). An input error (a bad job, a missing
file) ends that job only.

Exit status: 0 after a result, 1 after an error. The client cancels by
terminating the process (SIGTERM); the worker then removes its partial outputs
and exits. Stray prints from libraries go to stderr, never to the protocol.
Version 1 is the first; a client must refuse a different major version.
The job is checked whole against REQUEST_SCHEMA before anything runs: unknown
keys, a "protocol" or "threads" of the wrong type, are refused with one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.contract import PROTOCOL_VERSION
from engine.errors import EngineError

MESSAGE_TYPES = ("hello", "progress", "log", "result", "error")

# key: (required, what it must be, check)
REQUEST_SCHEMA = {
    "protocol": (False, f"the number {PROTOCOL_VERSION}", lambda v: _whole(v)),
    "operation": (True, "the name of an operation (text)", lambda v: isinstance(v, str) and bool(v)),
    "params": (False, "a JSON object of the operation's parameters", lambda v: isinstance(v, dict)),
    "threads": (
        False,
        "a positive whole number (or null: the engine's default)",
        lambda v: v is None or (_whole(v) and v > 0),
    ),
}


@dataclass(frozen=True)
class Request:
    operation: str
    params: dict[str, Any]
    threads: int | None = None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_request(job: Any) -> Request:
    """The worker's job, checked against REQUEST_SCHEMA; every mistake is an EngineError."""
    if not isinstance(job, dict):
        raise EngineError('The job must be a JSON object with an "operation" and its "params".')
    unknown = sorted(set(job) - set(REQUEST_SCHEMA))
    if unknown:
        raise EngineError(f"The job has unknown key(s) {', '.join(unknown)}; known: {', '.join(REQUEST_SCHEMA)}.")
    for key, (required, expected, check) in REQUEST_SCHEMA.items():
        if key not in job:
            if required:
                raise EngineError(f'The job lacks "{key}": it must be {expected}.')
            continue
        if not check(job[key]):
            raise EngineError(f'The job\'s "{key}" must be {expected}, got {job[key]!r}.')
    version = job.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise EngineError(
            f"The job uses worker protocol {version}, this engine speaks {PROTOCOL_VERSION}: "
            "update the plugin and the engine together."
        )
    return Request(job["operation"], job.get("params", {}), job.get("threads"))
