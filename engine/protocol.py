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

Exit status: 0 after a result, 1 after an error. The client cancels by
terminating the process (SIGTERM); the worker then removes its partial outputs
and exits. Stray prints from libraries go to stderr, never to the protocol.
Version 1 is the first; a client must refuse a different major version.
"""

PROTOCOL_VERSION = 1
MESSAGE_TYPES = ("hello", "progress", "log", "result", "error")
