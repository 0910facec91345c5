"""GPU training scripts and dataset readers (imports engine, never the reverse)."""
