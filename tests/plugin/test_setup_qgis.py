"""The managed environment's QGIS side: settings (profile folder, QGIS's proxy for pip), the
omnisat:setupengine algorithm's feedback and errors, and the set-up dialog's streaming and Cancel.
The builder is replaced by a scripted one here; tests/plugin/test_environment.py runs the real one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsSettings,
)
from qgis.PyQt.QtCore import QCoreApplication

from omnisat_qgis import settings
from omnisat_qgis.algorithms import setup as setup_algorithm
from omnisat_qgis.environment.builder import SetupCancelled, SetupError, SetupOptions, SetupResult
from omnisat_qgis.provider import PROVIDER_ID, OmniSatProvider


@pytest.fixture
def stored_settings():
    """Restores every QgsSettings key a test changes."""
    store = QgsSettings()
    keys = [
        "proxy/proxyEnabled",
        "proxy/proxyType",
        "proxy/proxyHost",
        "proxy/proxyPort",
        "proxy/proxyUser",
        "proxy/proxyPassword",
        settings.SETTINGS_PREFIX + settings.SETTING_ENV_FOLDER,
        settings.SETTINGS_PREFIX + settings.SETTING_PYTHON,
    ]
    saved = {k: store.value(k) for k in keys if store.contains(k)}
    yield store
    for key in keys:
        store.remove(key)
    for key, value in saved.items():
        store.setValue(key, value)


def test_proxy_for_pip_from_qgis_network_settings(qgis_app, stored_settings):
    stored_settings.setValue("proxy/proxyEnabled", "false")
    assert settings.pip_proxy() is None
    stored_settings.setValue("proxy/proxyEnabled", "true")
    stored_settings.setValue("proxy/proxyType", "HttpProxy")
    stored_settings.setValue("proxy/proxyHost", "proxy.example")
    stored_settings.setValue("proxy/proxyPort", "3128")
    assert settings.pip_proxy() == "http://proxy.example:3128"
    stored_settings.setValue("proxy/proxyUser", "ann")
    stored_settings.setValue("proxy/proxyPassword", "p@ss:word")
    assert settings.pip_proxy() == "http://ann:p%40ss%3Aword@proxy.example:3128"
    stored_settings.setValue("proxy/proxyType", "DefaultProxy")  # the system's: pip reads it itself
    assert settings.pip_proxy() is None


def test_environment_folder_defaults_to_the_profile(qgis_app, stored_settings, tmp_path):
    stored_settings.remove(settings.SETTINGS_PREFIX + settings.SETTING_ENV_FOLDER)
    assert settings.managed_env_folder() == Path(QgsApplication.qgisSettingsDirPath()) / "omnisat" / "venv"
    stored_settings.setValue(settings.SETTINGS_PREFIX + settings.SETTING_ENV_FOLDER, str(tmp_path / "env"))
    options = settings.environment_options(force_cpu_build=True)
    assert options.target == tmp_path / "env" and options.force_cpu
    assert options.verify_model.is_file() and options.requirements


def scripted_setup(calls: list):
    def run(options, callbacks):
        calls.append(options)
        callbacks.step("Installing torch 2.13.0", 20)
        for n in range(3):
            callbacks.line(f"pip line {n}")
        if options.rebuild:
            raise SetupError("Installing torch", "exit code 1; the disk is full", ["ERROR: No space left on device"])
        callbacks.step("The engine environment is ready", 100)
        return SetupResult(options.target / "bin" / "python", False, "cpu", 1.0)

    return run


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.console, self.infos, self.percents = [], [], []
        self.progressChanged.connect(self.percents.append)

    def pushConsoleInfo(self, text):  # noqa: N802 - QGIS API
        self.console.append(text)

    def pushInfo(self, text):  # noqa: N802 - QGIS API
        self.infos.append(text)


def test_setupengine_algorithm(qgis_processing, stored_settings, tmp_path, monkeypatch):
    stored_settings.setValue(settings.SETTINGS_PREFIX + settings.SETTING_ENV_FOLDER, str(tmp_path / "env"))
    calls = []
    monkeypatch.setattr(setup_algorithm, "set_up_engine", scripted_setup(calls))
    provider = OmniSatProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:setupengine")
        assert algorithm is not None
        feedback = Feedback()
        results, ok = algorithm.run({"FORCE_CPU": True}, QgsProcessingContext(), feedback)
        assert ok and results["PYTHON"] == str(tmp_path / "env" / "bin" / "python")
        assert results["TORCH_BUILD"] == "cpu" and results["REUSED"] == "False"
        assert calls[0].force_cpu and calls[0].target == tmp_path / "env"
        assert feedback.console == ["pip line 0", "pip line 1", "pip line 2"]
        assert 20 in feedback.percents and "Installing torch 2.13.0" in feedback.infos
        with pytest.raises(QgsProcessingException) as info:
            algorithm.processAlgorithm({"REBUILD": True}, QgsProcessingContext(), Feedback())
        assert "Installing torch failed" in str(info.value) and "No space left on device" in str(info.value)
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)


def options_in(folder: Path, force_cpu: bool, rebuild: bool) -> SetupOptions:
    return SetupOptions(
        target=folder / "env",
        engine_root=folder,
        requirements=(),
        verify_model=folder / "m",
        force_cpu=force_cpu,
        rebuild=rebuild,
    )


def wait_until(condition, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the dialog did not finish"
        QCoreApplication.processEvents()
        time.sleep(0.01)


def test_dialog_streams_pip_output_and_finishes(qgis_app, tmp_path):
    from omnisat_qgis.gui.setup_dialog import SetupDialog

    calls = []
    dialog = SetupDialog(
        runner=scripted_setup(calls), options_factory=lambda force, rebuild: options_in(tmp_path, force, rebuild)
    )
    dialog.force_cpu.setChecked(True)
    dialog.start()
    wait_until(lambda: dialog.close_button.isEnabled())
    assert not dialog.running() and calls[0].force_cpu
    text = dialog.log.toPlainText()
    assert "pip line 2" in text and "was built in 1 s" in text
    assert dialog.progress.value() == 100 and dialog.start_button.isEnabled()
    dialog.rebuild.setChecked(True)  # the scripted builder fails on a rebuild
    dialog.start()
    wait_until(lambda: dialog.close_button.isEnabled())
    assert "Set-up did not complete" in dialog.status.text() and "No space left on device" in dialog.log.toPlainText()


def test_dialog_cancel(qgis_app, tmp_path):
    from omnisat_qgis.gui.setup_dialog import SetupDialog

    def until_cancelled(options, callbacks):
        callbacks.line("Collecting torch")
        while not callbacks.is_cancelled():
            time.sleep(0.01)
        raise SetupCancelled("Installing torch", "cancelled; the previous environment, if any, is unchanged")

    dialog = SetupDialog(
        runner=until_cancelled, options_factory=lambda force, rebuild: options_in(tmp_path, force, rebuild)
    )
    dialog.start()
    wait_until(lambda: "Collecting torch" in dialog.log.toPlainText())
    assert dialog.cancel_button.isEnabled() and not dialog.close_button.isEnabled()
    dialog.cancel()
    wait_until(lambda: dialog.close_button.isEnabled())
    assert "cancelled; the previous environment" in dialog.status.text()


def test_worker_python_falls_back_to_the_managed_environment(qgis_app, stored_settings, tmp_path, monkeypatch):
    from omnisat_qgis.environment.builder import venv_python

    monkeypatch.delenv(settings.ENV_PYTHON, raising=False)
    stored_settings.remove(settings.SETTINGS_PREFIX + settings.SETTING_PYTHON)
    monkeypatch.setattr(settings, "default_python", lambda: tmp_path / "checkout" / ".venv" / "bin" / "python")
    stored_settings.setValue(settings.SETTINGS_PREFIX + settings.SETTING_ENV_FOLDER, str(tmp_path / "env"))
    with pytest.raises(settings.SettingsError, match="Run 'Set up the OmniSat engine'"):
        settings.worker_python()
    managed = venv_python(tmp_path / "env")
    managed.parent.mkdir(parents=True)
    managed.write_text("#!/bin/sh\n")
    managed.chmod(0o755)
    assert settings.worker_python() == (managed, "the engine environment built by 'Set up the engine'")
