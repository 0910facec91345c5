"""Training scripts: dataset readers, objectives, the loop, configs (imports engine, never the reverse)."""
