"""The `models` operation: the model catalog (checkpoints and downloadable models) and the
architecture presets with their parameter counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.models.catalog import catalog_rows
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation


@dataclass
class ModelsParams:
    preset: str | None = field(default=None, metadata={"help": "only this preset (default: all)"})
    folders: list[str] = field(
        default_factory=list,
        metadata={
            "help": "further folders of checkpoints to list (besides the shipped ones and the user's models folder)"
        },
    )
    catalog_only: bool = field(default=False, metadata={"help": "list the catalog only, not the presets"})


def _summaries(counts: dict[str, int]) -> dict[str, int]:
    """Aggregates over the per-component counts: whole encoder (modality encoders + fusion) and decoders."""
    encoders = sum(v for k, v in counts.items() if k.startswith("encoder."))
    fusion = sum(v for k, v in counts.items() if k in ("combiner", "spatial_encoder", "cross_block", "projectors"))
    decoders = sum(v for k, v in counts.items() if k.startswith("decoder."))
    return {"encoder_total": encoders + fusion, "decoders_total": decoders}


@operation("models", ModelsParams, summary="List the model catalog and the presets with parameter counts.")
def list_models(params: ModelsParams, reporter: Reporter) -> dict[str, Any]:
    """The catalog: each checkpoint shipped, in the user's models folder (OMNISAT_MODELS_DIR) or in
    --folders, and each downloadable model (fetch-model), with architecture, modalities and bands,
    patch size, parameter count, size, sha256, provenance, licence and whether it has a classification
    head. Then each preset built with random weights, its parameters counted per component
    (per-modality encoders and decoders, combiner, task head, total)."""
    catalog = catalog_rows([Path(f) for f in params.folders])
    for row in catalog:
        reporter.log(
            f"{row['name']:<24} {row['status']:<12} {row['architecture']:<8} "
            f"{row['parameters'] / 1e6:8.2f} M  {', '.join(row['modalities'])}"
        )
    if params.catalog_only:
        return {"catalog": catalog}
    from engine.models.heads import HeadConfig, build_head  # lazy: keeps torch out of --help
    from engine.models.jepa import pretraining_parameter_counts  # lazy: keeps torch out of --help
    from engine.models.registry import build_model, count_parameters, preset, preset_names  # lazy: torch

    names = [params.preset] if params.preset else preset_names()
    presets = []
    for name in names:
        entry = preset(name)
        model = build_model(name)
        counts = count_parameters(model)
        counts.update(_summaries(counts))
        # Modules used only in pretraining (e.g. AnySat's JEPA predictor), outside "total".
        counts.update(pretraining_parameter_counts(model))
        if "n_classes" in entry.metadata:
            head = build_head(
                HeadConfig(
                    "classification",
                    model.embed_dim,
                    int(entry.metadata["n_classes"]),
                    bool(entry.metadata.get("multilabel", False)),
                )
            )
            counts["head.classification"] = sum(p.numel() for p in head.parameters())
            counts["total_with_head"] = counts["total"] + counts["head.classification"]
        presets.append(
            {
                "name": name,
                "architecture": model.config.architecture,
                "embed_dim": model.embed_dim,
                "modalities": {
                    m.name: {"kind": m.kind, "bands": list(m.bands), "gsd_m": m.gsd_m}
                    for m in model.modalities.values()
                },
                "metadata": entry.metadata,
                "parameters": counts,
            }
        )
        reporter.log(f"{name} ({model.config.architecture}, D={model.embed_dim})")
        for component, n in counts.items():
            reporter.log(f"  {component:<28} {n:>12,d}  ({n / 1e6:.3f} M)")
    return {"catalog": catalog, "presets": presets}
