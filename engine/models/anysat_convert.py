"""Reference AnySat weights converted into a checkpoint of this engine (import-anysat, fetch-model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.download import sha256_of
from engine.models.anysat_import import load_reference, map_state_dict, reference_model, unwrap
from engine.models.checkpoint import save_checkpoint
from engine.runtime.progress import Reporter


def convert_reference(
    source: Path,
    output: str,
    reporter: Reporter,
    allow_missing: bool = False,
    extra_provenance: dict[str, Any] | None = None,
    start: float = 0.0,
    end: float = 100.0,
) -> dict[str, Any]:
    """import-anysat's conversion; ``extra_provenance`` adds to the checkpoint's, progress on [start, end]."""

    def progress(percent: float, message: str) -> None:
        reporter.progress(start + (end - start) * percent / 100, message)

    if not source.is_file():
        raise EngineError(f"Reference weights '{source}' do not exist: check the path of the .pth file.")
    out = check_output_path(output, "output")
    if out.suffix != ".safetensors":
        raise EngineError(f"Output '{out}' must end in .safetensors (weights are never pickled).")
    progress(5, f"reading {source.name}")
    state, duplicates = unwrap(load_reference(source), str(source))
    model = reference_model(state, str(source))
    progress(40, "mapping keys")
    mapped, report = map_state_dict(model, state, str(source), duplicates)
    for key in report.unused:
        reporter.log(f"unused reference key: {key}", "warning")
    for key in report.missing:
        reporter.log(f"missing in the reference (left at initialization): {key}", "warning")
    if report.missing and not allow_missing:
        raise EngineError(
            f"{len(report.missing)} weights of our model are not in '{source}' (first: {report.missing[0]}). "
            "The file is not a complete AnySat checkpoint; pass --allow-missing to write it anyway."
        )
    model.load_state_dict(mapped, strict=not report.missing)
    progress(70, "writing checkpoint")
    size = {256: "tiny", 512: "small", 768: "base"}[model.embed_dim]
    provenance = {
        "source": "reference AnySat state dict (Astruc et al., CVPR 2025), converted by import-anysat",
        "reference_file": source.name,
        "reference_sha256": sha256_of(source),
        "size": size,
        "keys_mapped": len(report.mapped),
        "keys_unused": report.unused,
        "keys_missing": report.missing,
        "duplicate_keys_checked": len(report.duplicates),
    } | (extra_provenance or {})
    save_checkpoint(out, model, provenance=provenance)
    reporter.log(
        f"{len(report.mapped)} reference keys mapped, {len(report.unused)} unused, "
        f"{len(report.missing)} missing, {len(report.duplicates)} duplicates checked equal"
    )
    progress(100, f"wrote {out}")
    return {
        "output": str(out),
        "size": size,
        "mapped": len(report.mapped),
        "unused": report.unused,
        "missing": report.missing,
        "duplicates": len(report.duplicates),
    }
