import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores are shared by several people: keep each test on at most two threads.
    torch.set_num_threads(2)
