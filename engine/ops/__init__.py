"""Engine operations registered in engine.runtime.registry (one function per command)."""
