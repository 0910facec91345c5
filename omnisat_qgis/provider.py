"""The OmniSat Processing provider: id ``omnisat``; algorithms listed in algorithms.ALGORITHMS."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from omnisat_qgis import settings
from omnisat_qgis.algorithms import ALGORITHMS
from omnisat_qgis.paths import resources_dir

PROVIDER_ID = "omnisat"


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

            ProcessingConfig.removeSetting(settings.SETTING_PYTHON)
            ProcessingConfig.removeSetting(settings.SETTING_THREADS)
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
        ProcessingConfig.addSetting(Setting(
            group, settings.SETTING_PYTHON, "OmniSat worker Python (empty: the project's .venv)", "",
            valuetype=Setting.FILE,
        ))
        ProcessingConfig.addSetting(Setting(
            group, settings.SETTING_THREADS, "OmniSat worker threads (0: all cores)", 0,
        ))
        ProcessingConfig.readSettings()

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
