"""``python -m omnisat_qgis.environment``: build or check the engine environment without QGIS.

The same steps as "Set up the engine" in QGIS (see builder.py); prints each step, pip's
output, and the time it took. Outside QGIS the folder must be given (--target); QGIS's
default is <profile>/omnisat/venv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omnisat_qgis.environment.builder import SetupCallbacks, SetupError, SetupOptions, set_up_engine
from omnisat_qgis.environment.interpreters import NoPythonError
from omnisat_qgis.environment.requirements import engine_requirements
from omnisat_qgis.paths import engine_root, resources_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omnisat_qgis.environment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", type=Path, required=True, help="the environment's folder")
    parser.add_argument("--base-python", type=Path, help="Python to create it from (default: searched)")
    parser.add_argument("--force-cpu", action="store_true", help="the CPU build of torch even with a GPU")
    parser.add_argument("--rebuild", action="store_true", help="build anew even when the existing one works")
    parser.add_argument("--torch-index", help="base address of PyTorch's wheel index (default: pip's index)")
    parser.add_argument("--proxy", help="proxy for pip (scheme://[user:password@]host:port)")
    parser.add_argument("--quiet", action="store_true", help="steps only, not pip's output")
    args = parser.parse_args(argv)
    options = SetupOptions(
        target=args.target.expanduser().resolve(),
        engine_root=engine_root(),
        requirements=tuple(engine_requirements()),
        verify_model=resources_dir() / "models" / "anysat-tiny.safetensors",
        force_cpu=args.force_cpu,
        proxy=args.proxy,
        torch_index=args.torch_index,
        base_python=args.base_python,
        rebuild=args.rebuild,
    )
    callbacks = SetupCallbacks(
        step=lambda message, percent: print(f"[{percent:3.0f}%] {message}", flush=True),
        line=(lambda text: None) if args.quiet else (lambda text: print(f"    {text}", flush=True)),
    )
    try:
        result = set_up_engine(options, callbacks)
    except SetupError as exc:
        print(f"error: {exc.report()}", file=sys.stderr)
        return 2
    except NoPythonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: the previous environment, if any, is unchanged", file=sys.stderr)
        return 130
    state = "checked (already built)" if result.reused else "built and verified"
    print(f"set-up: {result.python} {state} in {result.seconds:.1f} s (torch build {result.torch_build})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
