"""The `import-anysat` operation: reference AnySat weights (.pth) -> our safetensors checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runtime.progress import Reporter
from engine.runtime.registry import operation


@dataclass
class ImportAnySatParams:
    reference: str = field(
        metadata={
            "help": "reference AnySat state dict (.pth), e.g. the released base weights",
            "positional": True,
            "role": "input",
        }
    )
    output: str = field(metadata={"help": "checkpoint to write (.safetensors)", "positional": True})
    allow_missing: bool = field(
        default=False,
        metadata={
            "help": "write the checkpoint even when some of our weights are not in the file (left at their init)"
        },
    )


@operation(
    "import-anysat",
    ImportAnySatParams,
    outputs=("output",),
    summary="Convert reference AnySat weights (.pth state dict) into a checkpoint of this engine.",
)
def import_anysat(params: ImportAnySatParams, reporter: Reporter) -> dict[str, Any]:
    """Load the reference state dict safely (torch.load with weights_only=True, no arbitrary
    code), map every key explicitly to our AnySat, report unused and missing keys, stop on any
    shape mismatch, and write a self-describing safetensors checkpoint."""
    from engine.models.anysat_convert import convert_reference  # lazy: keeps torch out of --help

    return convert_reference(Path(params.reference), params.output, reporter, params.allow_missing)
