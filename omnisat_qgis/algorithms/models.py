"""``omnisat:fetchmodel``: download an official model and convert it into a checkpoint.

The file comes through QGIS's network stack (the proxy and authentication configured
in QGIS), resumable, its sha256 checked; the engine worker then converts it (the same
``fetch-model`` operation as the command line, which finds the verified file in place).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingException

from omnisat_qgis import settings
from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow
from omnisat_qgis.network_download import DownloadCallbacks, DownloadError, download

DOWNLOADABLE = ("anysat-base",)


class FetchModel(EngineAlgorithm):
    operation = "fetch-model"
    display = "Download an official model"
    group_name = "Engine"
    help_text = (
        "Downloads the official AnySat base encoder (about 504 MB; resumable: run again after a dropped "
        "connection or Cancel), checks its published sha256, and converts it into a checkpoint in the models "
        "folder (setting 'OmniSat models folder'; default omnisat/models in the QGIS profile). The download "
        "uses QGIS's network settings (proxy, authentication). The model hub's address is the setting "
        "'OmniSat model hub address' or the OMNISAT_MODEL_HUB environment variable. The checkpoint carries "
        "the published normalization statistics where they exist; for the other sensors, compute yours with "
        "'Normalization statistics of my data'."
    )
    params = (
        Param("NAME", "name", "enum", "Model", default=DOWNLOADABLE[0], options=DOWNLOADABLE),
        Param("FOLDER", "folder", "string", "Models folder (empty: the setting's)", optional=True),
        Param("HUB_URL", "hub_url", "string", "Model hub address (empty: the setting's)", optional=True),
        Param("AUTHCFG", "authcfg", "string", "QGIS authentication configuration id for the hub", optional=True),
        Param("TIMEOUT", "timeout", "float", "Seconds without data before the download stops", default=60.0, minimum=1),
    )
    results = (
        ResultRow("OUTPUT", "output", "string", "The converted checkpoint"),
        ResultRow("DOWNLOADED", "downloaded", "string", "Whether bytes were downloaded in this run"),
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
            return {"OUTPUT": plan["output"], "DOWNLOADED": "False"}
        feedback.pushInfo(f"Downloading {plan['url']} ({plan['size_bytes'] / 1e6:.0f} MB, licence {plan['licence']})")

        def progress(done: int, total: int | None):
            share = done / total if total else 0.0
            feedback.setProgress(80 * share)
            feedback.setProgressText(
                f"{done / 1e6:,.0f} of {total / 1e6:,.0f} MB" if total else f"{done / 1e6:,.0f} MB"
            )

        try:
            fetched = download(
                plan["url"],
                Path(plan["download"]),
                plan["sha256"],
                DownloadCallbacks(progress=progress, log=feedback.pushInfo, is_cancelled=feedback.isCanceled),
                stall_timeout_s=params["timeout"],
                authcfg=authcfg or "",
            )
        except DownloadError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo("Download verified (sha256); converting")
        result = self.run_engine(params, feedback)["result"]
        return {"OUTPUT": result["output"], "DOWNLOADED": str(fetched or result.get("downloaded", False))}
