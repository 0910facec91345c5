"""The public AnySat reference (gastruc/AnySat), built from a checkout, for timing side by side.

The checkout stays outside the project: ``python -m engine bench anysat --reference PATH``
builds the reference through the checkout's own ``hubconf.py`` (the documented path, flash
attention off) with random weights, and our model receives the same weights through the
``import-anysat`` key mapping, so both compute the same function on the same inputs.
The reference's encoder needs only torch and numpy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.errors import EngineError
from engine.models.anysat import AnySat, anysat_config
from engine.models.anysat_import import REFERENCE_SENSORS, map_state_dict, unwrap

THEIRS = {ours: theirs for theirs, ours in REFERENCE_SENSORS.items()}


def _hubconf(checkout: Path):
    hub = checkout / "hubconf.py"
    if not hub.is_file() or not (checkout / "src" / "models" / "networks" / "encoder" / "Any_multi.py").is_file():
        raise EngineError(
            f"{checkout} is not a gastruc/AnySat checkout (no hubconf.py or "
            "src/models/networks/encoder/Any_multi.py): pass the folder that holds hubconf.py."
        )
    for folder in (checkout, checkout / "src"):  # the reference imports both `src.models` and `models`
        if str(folder.resolve()) not in sys.path:
            sys.path.insert(0, str(folder.resolve()))
    spec = importlib.util.spec_from_file_location("anysat_reference_hubconf", hub)
    module = importlib.util.module_from_spec(spec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.loader.exec_module(module)
    except ImportError as error:
        raise EngineError(f"The reference code in {checkout} does not import ({error}).") from error
    return module


def load_pair(checkout: Path, size: str, modalities: tuple[str, ...], seed: int = 0) -> tuple[nn.Module, AnySat]:
    """(reference, ours) with the reference's random weights copied into ours, both in eval mode."""
    hub = _hubconf(Path(checkout))
    torch.manual_seed(seed)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        reference = hub.AnySat(model_size=size, flash_attn=False).eval()
    state, _ = unwrap(reference.model.state_dict(), "the reference model")
    ours = AnySat(anysat_config(size, modalities)).eval()
    mapped, report = map_state_dict(ours, state)
    if report.missing:
        raise EngineError(
            f"The reference model lacks weights for {', '.join(report.missing[:5])}: is the checkout an AnySat release?"
        )
    ours.load_state_dict(mapped)
    return reference, ours


def reference_inputs(inputs: dict[str, Tensor], dates: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our batch -> the reference's input dict (series dates under ``<key>_dates``)."""
    batch = {THEIRS[name]: x for name, x in inputs.items()}
    batch.update({f"{THEIRS[name]}_dates": d for name, d in dates.items()})
    return batch
