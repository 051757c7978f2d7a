"""Depthwise convolutions (``Conv1d`` / ``Conv2d`` with ``groups = in_channels``) as the IR's
depthwise ops: shim training, import, EBOPs, plain import, a MobileNet-style separable block
through the Vitis C++ backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hgqir.frontends.torch.testing import check_bit_exact, train_steps
from torch import nn

import hgqir
from hgqir.ir import OpKind


def _separable(multiplier: int = 1) -> nn.Module:
    """MobileNet's block: a depthwise 3x3 convolution, then a pointwise 1x1 one."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4 * multiplier, 3, stride=2, padding=1, groups=4),
        nn.ReLU(),
        nn.Conv2d(4 * multiplier, 6, 1),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    )


@pytest.mark.parametrize("multiplier", [1, 2])
def test_separable_block_is_bit_exact(multiplier: int) -> None:
    torch.manual_seed(multiplier)
    x = torch.randn(32, 2, 8, 8)
    qmod = hgqir.quantize_torch(_separable(multiplier), x, beta=1e-5)
    train_steps(qmod, x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    (dw,) = g.ops_of(OpKind.DEPTHWISE_CONV2D)
    assert dw.operands[1].shape == (3, 3, 4 * multiplier)
    check_bit_exact(qmod, g, [x, 6 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_depthwise_conv1d_and_plain_import() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv1d(3, 3, 5, padding=2, groups=3), nn.Conv1d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 12, 2))
    x = torch.randn(64, 3, 12, dtype=torch.float64)
    with pytest.warns(UserWarning, match="plain float module"):
        g = hgqir.from_torch(net.double(), x[:1], calibration=x[:48])
    assert len(g.ops_of(OpKind.DEPTHWISE_CONV1D)) == 1
    with torch.no_grad():
        want = net(x[48:]).numpy()
    assert np.abs(g.run(x[48:].numpy()) - want).max() < 0.05


def test_other_groupings_are_refused() -> None:
    with pytest.raises(hgqir.UnsupportedOpError, match="groups=2"):
        hgqir.from_torch(nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 5, 5))


@pytest.mark.slow
def test_separable_block_through_vitis(tmp_path: Path) -> None:
    torch.manual_seed(7)
    x = torch.randn(24, 2, 8, 8)
    qmod = hgqir.quantize_torch(_separable(2), x, beta=1e-5)
    train_steps(qmod, x, steps=2)
    g = hgqir.from_torch(qmod, x, calibration=x)
    prj = hgqir.emit(g, "vitis", tmp_path / "prj").compile()
    xs = (4 * torch.randn(16, 2, 8, 8)).double().numpy()
    assert np.array_equal(prj.predict(xs), g.run(xs))


def test_dilated_convolutions_are_exact() -> None:
    """Conv1d / Conv2d with dilation: the convolution with the zero-stuffed kernel; EBOPs equal."""
    torch.manual_seed(8)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, dilation=2, padding="same"),
        nn.ReLU(),
        nn.Conv2d(3, 2, (2, 3), dilation=(1, 2)),
        nn.Flatten(),
    )
    x = torch.randn(24, 2, 9, 9)
    qmod = hgqir.quantize_torch(net, x, beta=1e-5)
    train_steps(qmod, x, steps=2)
    g = hgqir.from_torch(qmod, x, calibration=x)
    assert [op.operands[1].shape[:2] for op in g.ops_of(OpKind.CONV2D)] == [(5, 5), (2, 5)]
    check_bit_exact(qmod, g, [x, 5 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total
    seq = nn.Sequential(nn.Conv1d(2, 2, 3, dilation=3), nn.Flatten()).double()
    xs = torch.randn(40, 2, 12, dtype=torch.float64)
    with pytest.warns(UserWarning, match="plain float module"):
        plain = hgqir.from_torch(seq, xs[:1], calibration=xs)
    with torch.no_grad():
        assert np.abs(plain.run(xs.numpy()) - seq(xs).numpy()).max() < 0.05
