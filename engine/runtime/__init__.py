"""Runtime: the operation registry, the CLI, the worker process and its protocol, progress, threads, precision, distributed runs."""
