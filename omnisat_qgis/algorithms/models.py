"""``omnisat:fetchmodel``: download an official model and convert it into a checkpoint.

The files come through QGIS's network stack (the proxy and authentication configured
in QGIS), resumable, the weights' sha256 checked; the engine worker then converts them (the same
``fetch-model`` operation as the command line, which finds the verified files in place).
A model whose publisher gives no sha256 we can read (universat-base: config.json +
model.safetensors) has its hash recorded by the engine at the first download, shown, and
any later download that differs is refused (engine.models.pins).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingException

from omnisat_qgis import settings
from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow
from omnisat_qgis.model_catalog import DOWNLOADABLE
from omnisat_qgis.network_download import DownloadCallbacks, DownloadError, download


class FetchModel(EngineAlgorithm):
    operation = "fetch-model"
    display = "Download an official model"
    group_name = "Engine"
    help_text = (
        "Downloads an official encoder: AnySat base (about 504 MB) or UniverSat Base (about 804 MB) "
        "(resumable: run again after a dropped connection or Cancel), checks its sha256 (AnySat: the published "
        "one; UniverSat: none can be read from here, so the first download's is recorded in "
        "pinned-sha256.json in the models folder and shown, and a later download that differs is refused), "
        "and converts it into a checkpoint in the models "
        "folder (setting 'OmniSat models folder'; default omnisat/models in the QGIS profile). The download "
        "uses QGIS's network settings (proxy, authentication). The model hub's address is the setting "
        "'OmniSat model hub address' or the OMNISAT_MODEL_HUB environment variable. The checkpoint carries "
        "the published normalization statistics where they exist; for the other sensors, compute yours with "
        "'Normalization statistics of my data'."
    )
    params = (
        Param("NAME", "name", "enum", "Model", default="anysat-base", options=tuple(DOWNLOADABLE)),
        Param("FOLDER", "folder", "string", "Models folder (empty: the setting's)", optional=True),
        Param("HUB_URL", "hub_url", "string", "Model hub address (empty: the setting's)", optional=True),
        Param("AUTHCFG", "authcfg", "string", "QGIS authentication configuration id for the hub", optional=True),
        Param("TIMEOUT", "timeout", "float", "Seconds without data before the download stops", default=60.0, minimum=1),
    )
    results = (
        ResultRow("OUTPUT", "output", "string", "The converted checkpoint"),
        ResultRow("DOWNLOADED", "downloaded", "string", "Whether bytes were downloaded in this run"),
        ResultRow("SHA256", "sha256", "string", "sha256 of the downloaded weights"),
    )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        given = self.engine_params(parameters, context, feedback)
        authcfg = given.pop("authcfg", "")
        params = {
            "name": given["name"],
            "folder": given.get("folder") or str(settings.models_folder()),
            "hub_url": given.get("hub_url") or settings.model_hub(),
            "timeout": given["timeout"],
        }
        plan = self.run_engine(params | {"plan_only": True}, feedback)["result"]
        if plan["ready"]:
            feedback.pushInfo(f"{plan['output']} is already there, converted from the verified download.")
            return {"OUTPUT": plan["output"], "DOWNLOADED": "False", "SHA256": plan["sha256"] or ""}
        feedback.pushInfo(f"Downloading {plan['url']} ({plan['size_bytes'] / 1e6:.0f} MB, licence {plan['licence']})")
        source = plan.get("sha256_source", "the published file's")
        if plan["sha256"] is None:
            feedback.pushInfo(f"sha256: {source} (no published hash can be read from here)")
        # UniverSat's hub layout is two files (config.json, then the weights); AnySat's one.
        files = plan.get("files") or [{"url": plan["url"], "download": plan["download"]}]
        fetched = False
        for index, item in enumerate(files):
            is_weights = item["download"] == plan["download"]
            first, share = 80 * index / len(files), 80 / len(files)

            def progress(done: int, total: int | None, first=first, share=share):
                feedback.setProgress(first + share * (done / total if total else 0.0))
                feedback.setProgressText(
                    f"{done / 1e6:,.0f} of {total / 1e6:,.0f} MB" if total else f"{done / 1e6:,.0f} MB"
                )

            try:
                fetched |= download(
                    item["url"],
                    Path(item["download"]),
                    plan["sha256"] if is_weights else None,
                    DownloadCallbacks(progress=progress, log=feedback.pushInfo, is_cancelled=feedback.isCanceled),
                    stall_timeout_s=params["timeout"],
                    authcfg=authcfg or "",
                    sha256_source=source,
                )
            except DownloadError as exc:
                raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo("Download verified (sha256); converting" if plan["sha256"] else "Downloaded; converting")
        result = self.run_engine(params, feedback)["result"]
        if result.get("sha256"):
            feedback.pushInfo(
                f"sha256 of {Path(plan['download']).name}: {result['sha256']} ({result.get('sha256_source', '')}): "
                "compare it with the one the model hub shows for the file"
            )
        return {
            "OUTPUT": result["output"],
            "DOWNLOADED": str(fetched or result.get("downloaded", False)),
            "SHA256": result.get("sha256") or plan["sha256"] or "",
        }
