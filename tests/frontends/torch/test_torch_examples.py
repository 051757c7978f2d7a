"""Models users already have, written the way PyTorch's own examples write them.

* ``MnistNet``: the canonical PyTorch MNIST example (``pytorch/examples``, ``mnist/main.py``):
  two convolutions with ``F.relu``, ``F.max_pool2d``, dropout, ``torch.flatten``, two linear
  layers and ``F.log_softmax``.
* ``LeNet``: LeNet-5 in the functional style of the PyTorch tutorials (``F.max_pool2d`` with
  a tuple and an int window, ``x.view(-1, n)``).

Each is trained a little with the shim and compared with the imported graph exactly
(``np.array_equal``), inputs far outside the training range included; the plain float import
of the full-size MNIST network follows the float model on fresh data; one small model goes
through the Vitis C++ backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hgqir.frontends.torch.testing import check_bit_exact
from torch import nn

import hgqir
from hgqir.ir import OpKind


class MnistNet(nn.Module):
    """pytorch/examples mnist/main.py, with the widths as parameters (defaults: the example's)."""

    def __init__(self, c1: int = 32, c2: int = 64, hidden: int = 128, side: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, 1)
        self.conv2 = nn.Conv2d(c1, c2, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(c2 * ((side - 4) // 2) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class LeNet(nn.Module):
    """LeNet-5 as the PyTorch "Neural Networks" tutorial writes it (32x32 input)."""

    def __init__(self, c1: int = 6, c2: int = 16) -> None:
        super().__init__()
        self.c2 = c2
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, self.c2 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _train(qmod: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 4) -> None:
    opt = torch.optim.Adam(qmod.parameters(), lr=3e-3)
    qmod.train()
    for _ in range(steps):
        opt.zero_grad()
        out = qmod(x)
        loss = F.nll_loss(out, y) if out.shape[-1] == 10 else out.square().mean()
        (loss + qmod.regularization()).backward()
        opt.step()


def _digits(side: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic "digit" images: a class-dependent bright bar on noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, side, side, generator=g) * 0.3
    for k in range(n):
        row = 2 + int(y[k]) * (side - 4) // 10
        x[k, 0, row : row + 2, 2:-2] += 0.7
    return x, y


def test_mnist_example_shim_is_bit_exact() -> None:
    torch.manual_seed(0)
    x, y = _digits(14, 64)
    qmod = hgqir.quantize_torch(MnistNet(4, 8, 16, side=14), x, beta=1e-6)
    _train(qmod, x, y)
    g = hgqir.from_torch(qmod, x[:1], calibration=x)
    kinds = [op.kind for op in g.ops]
    assert kinds.count(OpKind.MAXPOOL2D) == 1 and kinds.count(OpKind.CONV2D) == 2
    (sm,) = [op for op in g.ops if op.kind is OpKind.SOFTMAX]
    assert sm.attrs["log"]
    check_bit_exact(qmod, g, [x, 3 * x, 20 * torch.randn(16, 1, 14, 14)])
    out = g.run(x.numpy())
    assert (out <= 0).all()  # log-probabilities
    assert np.abs(np.logaddexp.reduce(out, axis=1)).max() < 0.25  # that sum to about 1
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_lenet_shim_is_bit_exact() -> None:
    torch.manual_seed(1)
    x, y = _digits(32, 48, seed=1)
    qmod = hgqir.quantize_torch(LeNet(3, 4), x, beta=1e-6)
    _train(qmod, x, y)
    g = hgqir.from_torch(qmod, x[:1], calibration=x)
    assert [op.kind for op in g.ops].count(OpKind.MAXPOOL2D) == 2
    check_bit_exact(qmod, g, [x, -4 * x, 10 * torch.randn(8, 1, 32, 32)])


@pytest.mark.slow
def test_full_size_mnist_example_plain_import_follows_the_float_model() -> None:
    """The example at its real size (1.2M parameters), imported from float with calibration."""
    torch.manual_seed(2)
    net = MnistNet().double().eval()
    x, _ = _digits(28, 160, seed=2)
    x = x.double()
    with pytest.warns(UserWarning, match="plain float module"):
        g = hgqir.from_torch(net, x[:1], calibration=x[:128])
    fresh = x[128:]
    with torch.no_grad():
        want = net(fresh).numpy()
    got = g.run(fresh.numpy())
    assert got.shape == want.shape == (32, 10)
    assert np.abs(got - want).max() < 0.1
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


@pytest.mark.slow
def test_functional_pools_and_log_softmax_through_vitis(tmp_path: Path) -> None:
    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.fc = nn.Linear(3 * 2 * 2 + 3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.conv(x))
            a = F.avg_pool2d(h, 2, padding=1, count_include_pad=False)  # 6x6 -> 4x4
            m = F.max_pool2d(a, kernel_size=2, stride=2)  # -> 2x2
            gap = F.adaptive_avg_pool2d(h, 1).flatten(1)
            return F.log_softmax(self.fc(torch.cat([m.flatten(1), gap], dim=1)), dim=-1)

    torch.manual_seed(3)
    x = torch.rand(40, 1, 8, 8)
    qmod = hgqir.quantize_torch(Small(), x, beta=1e-6)
    _train(qmod, x, torch.zeros(40, dtype=torch.long), steps=2)
    g = hgqir.from_torch(qmod, x[:1], calibration=x)
    kinds = {op.kind for op in g.ops}
    assert {OpKind.AVGPOOL2D, OpKind.MAXPOOL2D, OpKind.GLOBAL_AVGPOOL, OpKind.SOFTMAX} <= kinds
    xs = [x, 5 * torch.randn(20, 1, 8, 8)]
    check_bit_exact(qmod, g, xs)
    prj = hgqir.emit(g, "vitis", tmp_path / "prj").compile()
    for batch in xs:
        assert np.array_equal(prj.predict(batch.double().numpy()), g.run(batch.double().numpy()))


@pytest.mark.parametrize(
    "fn, why",
    [
        (lambda x: F.max_pool2d(x, 2, ceil_mode=True), "ceil_mode"),
        (lambda x: F.max_pool2d(x, 2, dilation=2), "dilated pooling"),
        (lambda x: F.avg_pool2d(x, 2, divisor_override=3), "divisor_override"),
        (lambda x: F.adaptive_avg_pool2d(x, 2), "only output size 1"),
        (lambda x: F.log_softmax(x.flatten(1), dim=0), "log_softmax over the batch axis"),
    ],
)
def test_refused_functional_variants_say_why(fn, why: str) -> None:  # type: ignore[no-untyped-def]
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fn(x)

    with pytest.raises(hgqir.UnsupportedOpError, match=why):
        hgqir.from_torch(M(), torch.randn(1, 2, 6, 6))
