"""The inference kernels (oneDNN linear layers, explicit attention over short keys) give
PyTorch's default results, and fall back where they cannot run."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from engine.models import kernels
from engine.models.attention import SHORT_KEYS, attend
from engine.models.kernels import Linear, default_kernels, linear

onednn = pytest.mark.skipif(not kernels.ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN linear kernel")


def _layer(bias: bool = True, seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear(48, 80, bias=bias).requires_grad_(False)


@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (0, 48)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_default(shape, bias):
    layer, x = _layer(bias), torch.randn(shape)
    expected = F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(linear(layer, x, "gelu"), F.gelu(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (0, 48)])
def test_fused_residual_add_equals_the_sum(shape):
    layer, x = _layer(), torch.randn(shape)
    residual = torch.randn(*shape[:-1], 80)
    expected = residual + F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(linear(layer, x, residual=residual), expected, atol=1e-5, rtol=1e-5)
    with default_kernels():
        torch.testing.assert_close(linear(layer, x, residual=residual), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no activation"):
        linear(layer, x, "gelu", residual=residual)


@onednn
def test_matmul_goes_through_onednn_unless_default_kernels():
    layer, x = _layer(), torch.randn(16, 48)

    def counted() -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            layer(x)
        return counter.get_total_flops()

    assert counted() == 0  # oneDNN's op is not an aten matmul
    with default_kernels():
        assert counted() == 2 * 16 * 48 * 80


def test_bf16_autocast_matches_default_and_follows_weight_changes():
    layer, x = _layer(), torch.randn(32, 48)
    with torch.autocast("cpu", torch.bfloat16):
        ours = layer(x)
        with default_kernels():
            expected = layer(x)
    assert ours.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), expected.float(), atol=2e-2, rtol=2e-2)
    layer.weight.mul_(-1)  # a cast kept from the first call must not survive this
    with torch.autocast("cpu", torch.bfloat16):
        flipped = layer(x)
    torch.testing.assert_close((flipped.float() - layer.bias), -(ours.float() - layer.bias), atol=5e-2, rtol=2e-2)


def test_training_falls_back_with_gradients():
    layer = _layer().requires_grad_(True)
    x = torch.randn(4, 48, requires_grad=True)
    linear(layer, x, "gelu").sum().backward()
    expected_x = x.grad.clone()
    x.grad = None
    F.gelu(F.linear(x, layer.weight, layer.bias)).sum().backward()
    torch.testing.assert_close(expected_x, x.grad)


@pytest.mark.parametrize("n_keys", [2, 26, SHORT_KEYS, SHORT_KEYS + 1, 300])
@pytest.mark.parametrize("with_bias", [True, False])
def test_attention_equals_sdpa_for_any_key_length(n_keys, with_bias):
    g = torch.Generator().manual_seed(n_keys)
    q = torch.randn(3, 4, 5, 16, generator=g)
    k, v = torch.randn(3, 4, n_keys, 16, generator=g), torch.randn(3, 4, n_keys, 16, generator=g)
    bias = torch.randn(3, 1, 5, n_keys, generator=g) if with_bias else None
    torch.testing.assert_close(
        attend(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-5, rtol=1e-5
    )


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_int8_linears_are_close_opt_in_and_follow_weight_changes():
    from engine.models.kernels import int8_linears, linear_rows

    torch.manual_seed(0)
    layer = Linear(64, 96).eval()
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        exact = layer(x)
        with int8_linears():
            quantized = layer(x)
            gelu = linear(layer, x, "gelu")
        assert torch.equal(layer(x), exact)  # only inside the block
        cosine = F.cosine_similarity(quantized.reshape(-1, 96), exact.reshape(-1, 96), dim=-1)
        assert quantized.shape == exact.shape and not torch.equal(quantized, exact) and cosine.min() > 0.999
        assert torch.allclose(gelu, F.gelu(quantized), atol=1e-6)
        layer.weight.mul_(2)
        with int8_linears():
            assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=0.1 * exact.abs().max())
        # a slice of the output features equals the same columns of the whole layer
        assert torch.allclose(linear_rows(layer, x, 32, 96), layer(x)[..., 32:], atol=1e-5)
