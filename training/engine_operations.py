"""The operations training adds to the engine's registry (found by engine.runtime.registry.provider_modules)."""

from training import learn_area  # noqa: F401  (registers learn-area)
