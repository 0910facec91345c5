"""The OmniSat bench's helpers: the reference checkout check and the per-module profile."""

import time

import pytest
import torch
from torch import nn

from engine.bench.omnisat import profile_modules
from engine.bench.omnisat_reference import load_reference_encoder, reference_inputs
from engine.errors import EngineError


def test_a_folder_that_is_not_the_reference_checkout_is_named_with_the_fix(tmp_path):
    with pytest.raises(EngineError, match=f"{tmp_path} is not a gastruc/OmniSat checkout"):
        load_reference_encoder(tmp_path)


def test_reference_inputs_use_the_reference_keys():
    x, d = torch.zeros(1, 2, 3, 6, 6), torch.zeros(1, 2)
    batch = reference_inputs({"aerial": torch.zeros(1, 4, 50, 50), "s1_asc": x}, {"s1_asc": d})
    assert set(batch) == {"aerial", "s1-asc", "s1-asc_dates"} and batch["s1-asc"] is x


class Sleeper(nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


def test_profile_sums_the_time_inside_each_group_and_removes_its_hooks():
    a, b1, b2 = Sleeper(0.02), Sleeper(0.01), Sleeper(0.01)
    seconds = profile_modules({"a": [a], "b": [b1, b2]}, lambda: b2(b1(a(torch.zeros(1)))))
    assert seconds["a"] >= 0.02 and seconds["b"] >= 0.02
    assert seconds["total"] >= seconds["a"] + seconds["b"]
    assert not (a._forward_hooks or a._forward_pre_hooks or b2._forward_hooks)
