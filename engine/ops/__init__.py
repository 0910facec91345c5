"""Engine operations registered in engine.api (one function per command)."""
