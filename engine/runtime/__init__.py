"""The engine's runtime: operation registry, CLI, worker, protocol, progress, threads, precision, distributed."""
