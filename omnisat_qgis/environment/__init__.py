"""The managed engine environment: a virtual environment with torch and the engine's
requirements, built and verified by the plugin so that a user needs no terminal.

QGIS-free (the Processing algorithm, the dialog and the tests share it); it never
imports torch, and never installs anything into the interpreter running QGIS.
"""
