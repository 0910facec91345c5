"""The plugin's menu actions: set up the engine, download the official model."""

from pathlib import Path

from omnisat_qgis.plugin import OmniSatPlugin


class FakeIface:
    def __init__(self):
        self.menu = []

    def mainWindow(self):  # noqa: N802 - QGIS API
        return None

    def addPluginToMenu(self, name, action):  # noqa: N802 - QGIS API
        self.menu.append((name, action.text()))

    def removePluginMenu(self, name, action):  # noqa: N802 - QGIS API
        self.menu.remove((name, action.text()))

    # the dock's toolbar button, Raster-menu entry and the dock itself (issue 13)
    def addToolBarIcon(self, action):  # noqa: N802 - QGIS API
        pass

    def removeToolBarIcon(self, action):  # noqa: N802 - QGIS API
        pass

    def addPluginToRasterMenu(self, name, action):  # noqa: N802 - QGIS API
        pass

    def removePluginRasterMenu(self, name, action):  # noqa: N802 - QGIS API
        pass

    def addDockWidget(self, area, dock):  # noqa: N802 - QGIS API
        pass

    def removeDockWidget(self, dock):  # noqa: N802 - QGIS API
        pass


def test_menu_actions_are_added_and_removed(qgis_app):
    iface = FakeIface()
    plugin = OmniSatPlugin(iface)
    plugin.initGui()
    assert iface.menu == [
        ("OmniSat", "Set up the OmniSat engine…"),
        ("OmniSat", "Download the official AnySat model…"),
        ("OmniSat", "Learn this area (pretrain on my layers)…"),
    ]
    plugin.unload()
    assert iface.menu == [] and plugin.provider is None


def test_unloading_the_plugin_stops_the_engine_workers_kept_between_runs(qgis_app, small_raster, tmp_path):
    import sys

    from omnisat_qgis import worker_client
    from omnisat_qgis.paths import engine_root

    run = worker_client.WorkerRun(
        python=Path(sys.executable),
        engine_root=engine_root(),
        operation="normalized-index",
        params={"input": str(small_raster), "output": str(tmp_path / "o.tif")},
    )
    worker_client.run_worker(run)
    waiting = [worker for _, worker in worker_client.POOL._idle]
    assert len(waiting) == 1 and waiting[0].process.poll() is None
    plugin = OmniSatPlugin(FakeIface())
    plugin.initGui()
    plugin.unload()
    assert waiting[0].process.poll() is not None and worker_client.POOL._idle == []
