"""The plugin's interactive side (kept apart from the Processing algorithms): the dock, its
tasks that run the engine, and the dialogs."""
