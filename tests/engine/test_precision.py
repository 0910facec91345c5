import pytest
import torch

from engine import precision
from engine.errors import EngineError


def test_choose_device_cpu_and_auto():
    assert precision.choose_device("cpu") == torch.device("cpu")
    assert precision.choose_device("auto").type in ("cpu", "cuda")


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(EngineError, match="no CUDA GPU"):
        precision.choose_device("cuda")


def test_unknown_names_are_errors():
    with pytest.raises(EngineError, match="Unknown device"):
        precision.choose_device("tpu")
    with pytest.raises(EngineError, match="Unknown precision"):
        precision.choose_dtype(torch.device("cpu"), "fp16")


def test_forced_precisions():
    cpu = torch.device("cpu")
    assert precision.choose_dtype(cpu, "fp32") == torch.float32
    assert precision.choose_dtype(cpu, "bf16") == torch.bfloat16


def test_auto_follows_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.choose_dtype(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.choose_dtype(cpu, "auto") == torch.float32


def test_autocast_context_changes_matmul_dtype():
    cpu = torch.device("cpu")
    a = torch.randn(4, 4)
    with precision.autocast_context(cpu, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast_context(cpu, torch.float32):
        assert (a @ a).dtype == torch.float32
