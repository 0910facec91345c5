"""Developer benches of the plugin side (the dock loop, the worker start-up); never shipped in the zip."""
