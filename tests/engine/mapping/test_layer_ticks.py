"""Progress from inside a forward pass (engine.mapping.forward.LayerTicks): a batch of a large model
takes many seconds, its linear layers tell how far it is."""

import torch
from torch import nn

from engine.mapping.forward import LayerTicks
from engine.runtime.progress import listening


def test_linear_layer_calls_become_the_share_of_a_forward_done():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8), nn.Linear(8, 2))
    shares = []
    ticks = LayerTicks(model)
    with listening(shares.append), torch.inference_mode():
        ticks.start()
        model(torch.randn(3, 4))
        model[1:](torch.randn(3, 8))  # a forward that calls some layers twice: counted as one whole
        ticks.end()
        first = list(shares)
        shares.clear()
        ticks.start()
        model(torch.randn(3, 4))
        model[1:](torch.randn(3, 8))
        ticks.end()
    # before a whole forward is counted: the layer count stands in, capped below the end
    assert first == [1 / 3, 2 / 3, LayerTicks.FIRST_CAP, LayerTicks.FIRST_CAP, LayerTicks.FIRST_CAP]
    assert shares == [1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0]
    ticks.close()
    shares.clear()
    with listening(shares.append):
        model(torch.randn(3, 4))
    assert shares == []  # the hooks are gone with the run
