"""The one weight-change detector (cultureclip.weights.weights_digest): every value counts, however written."""
import copy

import pytest
import torch

from cultureclip.weights import _device_sum, weights_digest


def _module(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    m.register_buffer("steps", torch.tensor(3))
    return m


def test_every_single_value_written_through_data_changes_the_digest():
    m = _module()
    base = weights_digest(m)
    w = m[0].weight
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            old = w[i, j].item()
            w.data[i, j] = torch.nextafter(w.data[i, j], torch.tensor(float("inf")))  # one ulp
            assert weights_digest(m) != base, (i, j)
            w.data[i, j] = old
    assert weights_digest(m) == base  # the same values again: the same digest
    assert weights_digest(copy.deepcopy(m)) == base  # content, not identity


def test_moved_values_dtype_shape_and_buffers_change_the_digest():
    m = _module()
    base = weights_digest(m)
    w = m[2].weight
    w.data[[0, 1]] = w.data[[1, 0]].clone()  # two rows swapped: the same multiset of values
    swapped = weights_digest(m)
    assert swapped != base
    w.data[[0, 1]] = w.data[[1, 0]].clone()
    assert weights_digest(m) == base
    m.steps.data += 1  # buffers count
    assert weights_digest(m) != base
    m.steps.data -= 1
    m[1].weight.data = m[1].weight.data.double()  # same values, another dtype
    assert weights_digest(m) != base


def test_the_device_sum_sees_every_single_word_and_moves():
    """The accelerator path's digest (run here on CPU tensors): an odd weight per 32-bit word, so any one
    changed word changes the sum; a swap of two words does too."""
    t = torch.randn(3, 1000)
    base = _device_sum(t).item()
    for k in range(0, t.numel(), 37):
        u = t.clone().view(-1)
        u[k] = torch.nextafter(u[k], torch.tensor(float("inf")))
        assert _device_sum(u.view_as(t)).item() != base, k
    u = t.clone().view(-1)
    u[[5, 2500]] = u[[2500, 5]].clone()
    assert _device_sum(u.view_as(t)).item() != base
    half = torch.randn(7, dtype=torch.float16)  # 14 bytes: padded to whole words
    h = _device_sum(half).item()
    half.data[6] += 1
    assert _device_sum(half).item() != h


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_digest_on_a_cuda_module_sees_data_writes():
    m = _module().cuda()
    base = weights_digest(m)
    m[0].weight.data[3, 5] += 1
    assert weights_digest(m) != base
