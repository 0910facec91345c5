"""The `fetch-model` operation: download an official model, verify it, convert it.

``python -m engine fetch-model anysat-base`` downloads the published file (resumable:
run it again after a dropped connection, a stall, a cancel or a full disk), checks its
sha256 before anything reads it, converts it with the model's importer into a
self-describing safetensors checkpoint in the models folder, and removes the download
unless ``--keep-download``. A second run with the checkpoint in place returns at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.io.download import download
from engine.models.downloads import downloadable, hub_base, normalization_notes, user_models_dir
from engine.models.pins import pinned
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation


@dataclass
class FetchModelParams:
    name: str = field(metadata={"help": "the model to download (anysat-base)", "positional": True})
    folder: str | None = field(
        default=None,
        metadata={
            "help": "models folder for the converted checkpoint (default: OMNISAT_MODELS_DIR, else the user's "
            "data folder, e.g. ~/.local/share/omnisat/models)"
        },
    )
    hub_url: str | None = field(
        default=None,
        metadata={"help": "base address of the model hub (default: the OMNISAT_MODEL_HUB environment variable)"},
    )
    timeout: float = field(
        default=60.0, metadata={"help": "seconds without data after which the download stops (run again to resume)"}
    )
    keep_download: bool = field(
        default=False,
        metadata={"help": "keep the downloaded reference file beside the checkpoint (in <folder>/downloads)"},
    )
    force: bool = field(default=False, metadata={"help": "convert again even when the checkpoint exists"})
    plan_only: bool = field(
        default=False,
        metadata={
            "help": "download nothing: print the address, sha256 and paths (to fetch the file with another tool, "
            "e.g. QGIS's network stack, into 'download', then run again)"
        },
    )


def _already_there(checkpoint: Path, sha256: str) -> bool:
    from engine.models.checkpoint import read_metadata  # lazy: keeps torch out of --help

    if not checkpoint.is_file():
        return False
    try:
        return read_metadata(checkpoint).get("provenance", {}).get("reference_sha256") == sha256
    except EngineError:
        return False


@operation(
    "fetch-model",
    FetchModelParams,
    outputs=("output",),
    summary="Download an official model (resumable, sha256-checked) and convert it into a checkpoint.",
)
def fetch_model(params: FetchModelParams, reporter: Reporter) -> dict[str, Any]:
    """Download the published file of a model (HTTP Range resume from a .part file, proxies from
    HTTPS_PROXY / HTTP_PROXY), verify its sha256 (a mismatch deletes it), convert it with the
    model's importer (torch.load with weights_only=True) into a safetensors checkpoint in the
    models folder, with provenance, licence and which normalization statistics are published."""
    from engine.models.anysat import anysat_config  # lazy: keeps torch out of --help
    from engine.models.anysat_convert import convert_reference  # lazy: keeps torch out of --help

    entry = downloadable(params.name)
    folder = Path(params.folder).expanduser() if params.folder else user_models_dir()
    checkpoint = folder / entry.checkpoint_name()
    # no published hash readable here: the one recorded at the first download (engine.models.pins)
    expected = entry.sha256 or pinned(folder, entry.name)
    ready = bool(expected) and _already_there(checkpoint, expected) and not params.force
    if params.plan_only and entry.converter == "universat-hub":
        root = f"{hub_base(params.hub_url).rstrip('/')}/{entry.repository}/resolve/main"
        downloads = folder / "downloads" / entry.name
        return {
            "output": str(checkpoint),
            "name": entry.name,
            "url": f"{root}/{entry.file}",
            "sha256": expected,
            "sha256_source": "catalog"
            if entry.sha256
            else ("recorded at the first download" if expected else "none yet: recorded at the first download"),
            "size_bytes": entry.size_bytes,
            "licence": entry.licence,
            "download": str(downloads / entry.file),
            "files": [
                {"url": f"{root}/{name}", "download": str(downloads / name)} for name in ("config.json", entry.file)
            ],
            "ready": ready,
        }
    if params.plan_only:
        return {
            "output": str(checkpoint),
            "name": entry.name,
            "url": entry.url(hub_base(params.hub_url)),
            "sha256": expected,
            "size_bytes": entry.size_bytes,
            "licence": entry.licence,
            "download": str(folder / "downloads" / entry.download_name),
            "ready": ready,
        }
    if ready:
        reporter.progress(100, f"{checkpoint} is already converted from the verified download")
        return {"output": str(checkpoint), "name": entry.name, "downloaded": False, "converted": False}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(
            f"Cannot create the models folder '{folder}' ({exc.strerror}): choose another --folder."
        ) from None
    url = entry.url(hub_base(params.hub_url))
    reporter.log(f"downloading {entry.name} ({entry.size_bytes / 1e6:.0f} MB) from {url}")
    if entry.converter == "universat-hub":
        return _fetch_universat(entry, params, folder, checkpoint, expected, url, reporter)
    source = folder / "downloads" / entry.download_name
    fetched = download(url, source, entry.sha256, reporter, timeout_s=params.timeout, start=0.0, end=80.0)
    provenance = {
        "catalog_name": entry.name,
        "download_url": url,
        "repository": entry.repository,
        "repository_file": entry.file,
        "licence": entry.licence,
        "description": entry.provenance,
        "normalization": normalization_notes(anysat_config(entry.size).modalities),
    }
    if entry.converter != "import-anysat":
        raise EngineError(f"internal: no converter {entry.converter!r} for {entry.name}")
    converted = convert_reference(source, str(checkpoint), reporter, extra_provenance=provenance, start=80.0, end=99.0)
    if not params.keep_download:
        source.unlink()
    placeholders = sorted(m for m, note in provenance["normalization"].items() if note.startswith("none"))
    if placeholders:
        reporter.log(
            f"no published normalization statistics for {', '.join(placeholders)}: compute them on your "
            "data with normalization-stats before using those modalities",
            "warning",
        )
    reporter.progress(100, f"{entry.name} is ready: {checkpoint}")
    return {
        "output": str(checkpoint),
        "name": entry.name,
        "downloaded": fetched,
        "converted": True,
        "download_kept": str(source) if params.keep_download else None,
        "mapped": converted["mapped"],
        "normalization_placeholders": placeholders,
    }


def _fetch_universat(
    entry, params: FetchModelParams, folder: Path, checkpoint: Path, expected: str | None, url: str, reporter: Reporter
) -> dict[str, Any]:
    """UniverSat's hub layout: config.json + model.safetensors, read directly (no importer, no unpickling)."""
    from engine.models.universat import universat_config  # lazy: keeps torch out of --help
    from engine.models.universat_weights import fetch_hub_model  # lazy: keeps torch out of --help

    provenance = {
        "catalog_name": entry.name,
        "download_url": url,
        "repository": entry.repository,
        "repository_file": entry.file,
        "licence": entry.licence,
        "description": entry.provenance,
        "normalization": normalization_notes(universat_config(entry.size).modalities),
    }
    result = fetch_hub_model(
        entry,
        hub_base(params.hub_url),
        folder,
        checkpoint,
        expected,
        reporter,
        params.timeout,
        params.keep_download,
        provenance,
    )
    reporter.log(
        "UniverSat's authors publish no per-sensor normalization statistics (they compute them per "
        "dataset): compute yours with normalization-stats and pass them to the job",
        "warning",
    )
    reporter.progress(100, f"{entry.name} is ready: {checkpoint}")
    return {
        "output": str(checkpoint),
        "name": entry.name,
        "downloaded": result["downloaded"],
        "converted": True,
        "sha256": result["sha256"],
        "sha256_source": "catalog" if entry.sha256 else "recorded at first download",
        "dropped_keys": result["dropped"],
        "normalization_placeholders": sorted(provenance["normalization"]),
    }
