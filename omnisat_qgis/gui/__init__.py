"""The plugin's interactive side: the dock, its map tool and the tasks that run the engine."""
