"""Winograd F(2x2, 3x3) convolution against PyTorch's convolution."""

import pytest
import torch
import torch.nn.functional as F

from engine.models.winograd import transform_filters, winograd_conv3x3


@pytest.mark.parametrize("n, size, c_in, c_out", [(3, (12, 12), 16, 24), (1, (6, 4), 8, 8), (2, (2, 2), 5, 3)])
def test_equals_conv2d_with_padding_one(n, size, c_in, c_out):
    torch.manual_seed(0)
    x = torch.randn(n, c_in, *size)
    weight = torch.randn(c_out, c_in, 3, 3)
    expected = F.conv2d(x.double(), weight.double(), padding=1)
    got = winograd_conv3x3(x.permute(0, 2, 3, 1).contiguous(), transform_filters(weight)).permute(0, 3, 1, 2)
    assert got.shape == expected.shape
    # As close to the float64 result as PyTorch's own float32 convolution is.
    direct_error = (F.conv2d(x, weight, padding=1).double() - expected).abs().max()
    assert (got.double() - expected).abs().max() <= 2 * direct_error + 1e-6


def test_odd_maps_are_refused():
    with pytest.raises(ValueError, match="even map sizes"):
        winograd_conv3x3(torch.randn(1, 3, 4, 2), transform_filters(torch.randn(2, 2, 3, 3)))
