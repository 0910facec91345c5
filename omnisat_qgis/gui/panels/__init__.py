"""The dock's panels: each a widget with its own state, read by the dock into run requests."""
