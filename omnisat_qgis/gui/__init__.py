"""The plugin's dialogs and dock (GUI code, kept apart from the Processing algorithms)."""
