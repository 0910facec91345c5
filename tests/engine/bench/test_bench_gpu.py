"""``bench gpu`` runs where there is no GPU (the CPU path of the same code) and says so; no timing asserted."""

import pytest
import torch

from engine.errors import EngineError
from engine.runtime.precision import to_device
from engine.runtime.registry import run_operation


def test_bench_gpu_quick_on_the_cpu_reports_every_model_and_batch():
    result = run_operation("bench", {"target": "gpu", "quick": True, "device": "cpu", "threads": 1})
    assert result["device"].startswith("cpu") and "not GPU" in result["note"]
    assert set(result["models"]) == {"omnisat-treesatai", "anysat-tiny"}
    for entry in result["models"].values():
        assert set(entry["batches"]["fp32"]) == {1, 2}
        assert all(row["tiles_per_s"] > 0 for row in entry["batches"]["fp32"].values())
        assert entry["largest_batch_run"]["fp32"] == 2


def test_bench_gpu_refuses_an_unknown_device():
    with pytest.raises(EngineError, match="device"):
        run_operation("bench", {"target": "gpu", "quick": True, "device": "tpu"})


def test_to_device_leaves_cpu_tensors_alone():
    x = torch.ones(3)
    assert to_device(x, torch.device("cpu")) is x
