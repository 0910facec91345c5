"""Raster input/output: validated opening, atomic writing."""
