"""The OmniSat Processing provider: id ``omnisat``; algorithms listed in algorithms.ALGORITHMS."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from omnisat_qgis import settings
from omnisat_qgis.algorithms import ALGORITHMS
from omnisat_qgis.paths import resources_dir

PROVIDER_ID = "omnisat"
ENVIRONMENT_SETTINGS = (
    settings.SETTING_ENV_FOLDER,
    settings.SETTING_BASE_PYTHON,
    settings.SETTING_FORCE_CPU,
    settings.SETTING_TORCH_INDEX,
    settings.SETTING_MODELS_FOLDER,
    settings.SETTING_MODEL_HUB,
)


class OmniSatProvider(QgsProcessingProvider):
    def id(self):
        return PROVIDER_ID

    def name(self):
        return "OmniSat"

    def longName(self):  # noqa: N802 - QGIS API
        return "OmniSat: multimodal Earth-observation models"

    def icon(self):
        return QIcon(str(resources_dir() / "icons" / "omnisat.svg"))

    def load(self):
        self._add_settings()
        return super().load()

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            for name in (settings.SETTING_PYTHON, settings.SETTING_THREADS, *ENVIRONMENT_SETTINGS):
                ProcessingConfig.removeSetting(name)
        except ImportError:
            pass

    def _add_settings(self):
        # Exposed in Settings > Options > Processing > Providers, like GDAL's or GRASS's
        # folders; absent (and not needed) where the processing plugin is not loaded.
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:
            return
        group = self.name()
        ProcessingConfig.addSetting(
            Setting(
                group,
                settings.SETTING_PYTHON,
                "OmniSat worker Python (empty: the project's .venv)",
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.addSetting(
            Setting(
                group,
                settings.SETTING_THREADS,
                "OmniSat worker threads (0: all cores)",
                0,
            )
        )
        for name, text, default, kind in (
            (
                settings.SETTING_ENV_FOLDER,
                "OmniSat engine environment folder (empty: omnisat/venv in the profile)",
                "",
                Setting.FOLDER,
            ),
            (
                settings.SETTING_BASE_PYTHON,
                "OmniSat base Python for the environment (empty: found next to QGIS)",
                "",
                Setting.FILE,
            ),
            (settings.SETTING_FORCE_CPU, "OmniSat engine: install the CPU build of torch even with a GPU", False, None),
            (settings.SETTING_TORCH_INDEX, "OmniSat engine: PyTorch wheel index (empty: pip's own index)", "", None),
            (
                settings.SETTING_MODELS_FOLDER,
                "OmniSat models folder (empty: omnisat/models in the profile)",
                "",
                Setting.FOLDER,
            ),
            (settings.SETTING_MODEL_HUB, "OmniSat model hub address (downloads of official models)", "", None),
        ):
            ProcessingConfig.addSetting(Setting(group, name, text, default, **({"valuetype": kind} if kind else {})))
        ProcessingConfig.readSettings()

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
