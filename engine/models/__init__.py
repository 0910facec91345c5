"""Models of the engine: OmniSat and AnySat behind one interface (see base.py).

Import submodules directly (``from engine.models.registry import build_model``);
this package imports nothing itself so that light commands do not pay for torch.
"""
