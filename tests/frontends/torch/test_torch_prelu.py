"""LeakyReLU and PReLU as the IR's exact ``prelu`` op: shim training (PReLU's slopes learn their
bitwidths like weights), import, interpreter and plain float import."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hgqir.frontends.torch.testing import Fn, check_bit_exact, train_steps
from torch import nn

import hgqir
from hgqir.ir import OpKind

DENSE = {
    "leaky": nn.LeakyReLU(),
    "leaky_0.2": nn.LeakyReLU(0.2),
    "leaky_function": Fn(lambda x: F.leaky_relu(x, 0.1)),
    "prelu_single": nn.PReLU(),
    "prelu_channels": nn.PReLU(6, init=0.3),
}


@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_model_bit_exact(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), DENSE[name], nn.Linear(6, 3))
    x = torch.randn(64, 4) * 2
    qmod = hgqir.quantize_torch(net, x, beta=1e-5)
    train_steps(qmod, x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    (op,) = [op for op in g.ops if op.kind is OpKind.PRELU]
    assert op.operands[1].shape in ((1,), (6,))
    check_bit_exact(qmod, g, [x, 5 * x, 60 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_prelu_per_channel_in_a_convnet_learns_its_slopes() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.PReLU(3, init=0.25), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)
    )
    x = torch.randn(32, 2, 6, 6)
    qmod = hgqir.quantize_torch(net, x, beta=1e-5)
    (slopes,) = [p for name, p in qmod.named_parameters() if name.endswith("1.weight")]
    before = slopes.detach().clone()
    train_steps(qmod, x, steps=6)
    assert before.shape == (3,) and not torch.equal(before, slopes.detach())  # the slopes train
    g = hgqir.from_torch(qmod, x, calibration=x)
    (op,) = [op for op in g.ops if op.kind is OpKind.PRELU]
    assert op.operands[1].shape == (1, 1, 3)  # channels last
    check_bit_exact(qmod, g, [x, 8 * torch.randn(16, 2, 6, 6)])
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_plain_import_follows_the_float_model() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Linear(8, 8), nn.PReLU(8), nn.Linear(8, 2)).double()
    x = torch.randn(300, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match="plain float module"):
        g = hgqir.from_torch(net, x[:1], calibration=x[:200])
    assert [op.kind for op in g.ops].count(OpKind.PRELU) == 2
    with torch.no_grad():
        want = net(x[200:]).numpy()
    assert np.abs(g.run(x[200:].numpy()) - want).max() < 0.05


class MaxMin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        return torch.cat([torch.maximum(a, b), torch.min(a, b), a.minimum(b * 0.5)], dim=1)


def test_maximum_minimum_bit_exact() -> None:
    torch.manual_seed(3)
    x = torch.randn(64, 4)
    qmod = hgqir.quantize_torch(MaxMin(), x, beta=1e-5)
    train_steps(qmod, x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    kinds = [op.kind for op in g.ops]
    assert kinds.count(OpKind.MAXIMUM) == 1 and kinds.count(OpKind.MINIMUM) == 2
    check_bit_exact(qmod, g, [x, 7 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total
    with pytest.warns(UserWarning, match="plain float module"):
        plain = hgqir.from_torch(MaxMin().double(), x[:1].double(), calibration=x.double())
    assert [op.kind for op in plain.ops].count(OpKind.MINIMUM) == 2


def test_max_as_a_reduction_is_refused() -> None:
    with pytest.raises(hgqir.UnsupportedOpError, match="reduction"):
        hgqir.from_torch(Fn(lambda x: torch.max(x)), torch.randn(2, 3))
