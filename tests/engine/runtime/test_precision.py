import pytest
import torch

from engine.errors import EngineError
from engine.runtime import precision


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


@pytest.mark.parametrize("family", ["omnisat", "anysat"])
def test_weights_kept_in_bf16_give_what_autocast_gives(family):
    """Casting the matmul weights once changes when they are cast, not the result beyond
    bf16 rounding (folded norms round twice)."""
    import copy

    from engine.models.kernels import Linear

    if family == "omnisat":
        from tests.engine.omnisat_helpers import tiny_batch, tiny_model

        model, (inputs, dates), kwargs = tiny_model().eval(), tiny_batch(batch=1), {}
    else:
        from tests.engine.anysat_helpers import batch, small_model

        model, (inputs, dates), kwargs = small_model(), batch(b=1), {"patch_size_m": 10}
    cpu = torch.device("cpu")
    kept = precision.keep_weights_in(copy.deepcopy(model), torch.bfloat16)
    linear = next(m for m in kept.modules() if isinstance(m, Linear))
    norm = next(m for m in kept.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)))
    assert linear.weight.dtype == torch.bfloat16 and norm.weight.dtype == torch.float32
    with torch.no_grad():
        fp32 = model.forward_features(inputs, dates, **kwargs).patch
        with precision.autocast_context(cpu, torch.bfloat16):
            autocast = model.forward_features(inputs, dates, **kwargs).patch.float()
            got = kept.forward_features(inputs, dates, **kwargs).patch.float()
    torch.testing.assert_close(got, autocast, atol=3e-2, rtol=3e-2)
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(got, fp32, dim=-1).min() >= 0.999 * cosine(autocast, fp32, dim=-1).min()
    assert precision.keep_weights_in(model, torch.float32) is model
    assert next(model.parameters()).dtype == torch.float32
