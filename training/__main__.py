"""``python -m training pretrain|finetune|evaluate CONFIG.yaml [key=value ...]`` and ``bench``.

Examples:
    python -m training pretrain training/configs/omnisat_treesatai_pretrain.yaml data.datasets.0.root=/data/TreeSat
    torchrun --nproc_per_node 4 -m training pretrain training/configs/anysat_multi_pretrain.yaml
    python -m training finetune training/configs/omnisat_treesatai_finetune.yaml model.init_from=runs/pre/model.safetensors
    python -m training evaluate training/configs/omnisat_treesatai_finetune.yaml model.init_from=runs/ft/model.safetensors
    python -m training bench --batch 128
Overrides are dotted config keys (see training/config.py); unknown keys are errors.
Errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from engine.errors import EngineError
from engine.runtime.progress import TerminalReporter
from training.config import load_config

PRETRAIN = ("omnisat", "anysat")
FINETUNE = ("supervised", "probe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Pretrain, fine-tune and evaluate the engine's models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:")[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "pretrain": "self-supervised pretraining (objective omnisat or anysat)",
        "finetune": "supervised fine-tuning or linear probing (objective supervised or probe)",
        "evaluate": "metrics of a trained model on a split (model.init_from or train.resume)",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("config", help="experiment YAML file (training/configs/*.yaml)")
        sub.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=3e-4")
        sub.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        if name == "evaluate":
            sub.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")
    bench = commands.add_parser("bench", help="samples/s of the TreeSatAI-TS preset, forward+backward")
    bench.add_argument(
        "--batch",
        type=int,
        default=128,
        help="batch size (default 128; 0: the largest whose step fits in the device's memory)",
    )
    bench.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    bench.add_argument("--preset", default="omnisat-treesatai")
    bench.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    bench.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    bench.add_argument("--dates", type=int, default=50, help="dates per time series")
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time torch.compile variants (compilation is slow on small CPUs)",
    )
    bench.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    reporter = TerminalReporter()
    try:
        if args.command == "bench":
            from training.bench import run_bench  # lazy: keeps torch out of this module

            result = run_bench(
                batch=args.batch,
                steps=args.steps,
                preset_name=args.preset,
                device=args.device,
                threads=args.threads,
                dates=args.dates,
                compile_variants=args.compile,
                reporter=reporter,
            )
        else:
            result = _run(args, reporter, "python -m training " + shlex.join(argv))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is intact; resume with train.resume=<out_dir>", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=1, default=str) if args.json else _summary(result))
    return 0


def _run(args: argparse.Namespace, reporter: TerminalReporter, command: str) -> dict:
    from training.trainer import Trainer  # lazy: keeps torch out of this module

    config = load_config(args.config, args.overrides)
    allowed = {"pretrain": PRETRAIN, "finetune": FINETUNE, "evaluate": FINETUNE}[args.command]
    if config.objective not in allowed:
        raise EngineError(
            f"'{args.command}' runs objectives {' or '.join(allowed)}, but {args.config} sets objective "
            f"{config.objective!r}: use the matching command or set objective=..."
        )
    if args.command == "evaluate":
        if not (config.model.init_from or config.train.resume):
            raise EngineError(
                "evaluate needs trained weights: set model.init_from=<model.safetensors> or train.resume=<run folder>."
            )
        trainer = Trainer(config, reporter, command, splits=(args.split,))
        try:
            metrics = trainer.evaluate(trainer.data.val, config.train.eval_batches)
        finally:
            trainer.close()
        return {"split": args.split, **metrics}
    trainer = Trainer(config, reporter, command)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def _summary(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
