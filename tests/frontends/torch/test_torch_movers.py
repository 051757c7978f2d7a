"""PyTorch tensor slicing, zero padding, nearest upsampling and ``nn.Threshold`` (``max(x, t)``
when the value is the threshold, an exact table otherwise): shim exact, plain import, Verilog,
refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hgqir.frontends.torch.testing import Fn, check_bit_exact, train_steps
from torch import nn

import hgqir
from hgqir.ir import OpKind


class Movers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.up = nn.Upsample(scale_factor=(2, 1))
        self.th = nn.Threshold(0.25, 0.25)
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pad(self.conv(x))  # [3, 4, 7]
        h = F.pad(h, (0, 1))  # [3, 4, 8]
        h = self.up(h)  # [3, 8, 8]
        h = F.interpolate(h[:, :, 1:5, ...], scale_factor=2, mode="nearest")[..., 2:10]  # [3, 8, 8]
        return self.fc(self.th(h).flatten(1))


def test_movers_shim_is_exact_and_plain_import_follows() -> None:
    torch.manual_seed(0)
    x = torch.randn(24, 2, 6, 6)
    qmod = hgqir.quantize_torch(Movers(), x, beta=1e-6)
    opt = torch.optim.Adam(qmod.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        (qmod(x).square().mean() + qmod.regularization()).backward()
        opt.step()
    g = hgqir.from_torch(qmod, x, calibration=x)
    kinds = [op.kind for op in g.ops]
    assert kinds.count(OpKind.SLICE) >= 2 and OpKind.CONCAT in kinds and OpKind.MAXIMUM in kinds
    check_bit_exact(qmod, g, [x, 5 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total
    net = Movers().double()
    with pytest.warns(UserWarning, match="plain float module"):
        plain = hgqir.from_torch(net, x[:1].double(), calibration=x.double())
    with torch.no_grad():
        want = net(x.double()).numpy()
    assert np.abs(plain.run(x.double().numpy()) - want).max() < 0.1


@pytest.mark.parametrize(
    "fn, why",
    [
        (lambda x: x[:, 0], "indexing other than slices"),
        (lambda x: x[:, :, ::2], "step other than 1"),
        (lambda x: x[1:], "batch axis"),
        (lambda x: F.pad(x, (1, 1), mode="reflect"), "only zero padding"),
        (lambda x: F.pad(x, (1, 1), value=1.0), "only zero padding"),
        (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), "only 'nearest'"),
        (lambda x: F.interpolate(x, size=(9, 9)), "integer scale_factor"),
    ],
)
def test_refusals_say_why(fn, why: str) -> None:  # type: ignore[no-untyped-def]
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fn(x)

    module = fn if isinstance(fn, nn.Module) else M()
    with pytest.raises(hgqir.UnsupportedOpError, match=why):
        hgqir.from_torch(module, torch.randn(1, 2, 6, 6))


def test_threshold_with_another_value_is_an_exact_table() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(4, 5), nn.Threshold(0.25, -1.0), nn.Linear(5, 2))
    x = torch.randn(48, 4)
    qmod = hgqir.quantize_torch(net, x, beta=1e-6)
    train_steps(qmod, x, steps=2)
    g = hgqir.from_torch(qmod, x, calibration=x)
    (lut,) = g.ops_of(OpKind.LUT)
    assert lut.attrs["func"] == "threshold(0.25,-1.0)"
    check_bit_exact(qmod, g, [x, 6 * torch.randn_like(x)])
    fn = nn.Sequential(nn.Linear(4, 5), nn.Threshold(0.25, -1.0)).double()
    with pytest.warns(UserWarning, match="plain float module"):
        plain = hgqir.from_torch(fn, x[:1].double(), calibration=x.double())
    with torch.no_grad():
        want, pre = fn(x.double()).numpy(), fn[0](x.double()).numpy()
    err = np.abs(plain.run(x.double().numpy()) - want)
    far = np.abs(pre - 0.25) > 1 / 16  # next to the step, rounding the input may cross it
    assert err[far].max() < 0.05 and far.mean() > 0.8  # rounding of the input and the table entries


@pytest.mark.slow
def test_movers_through_verilog(tmp_path: Path) -> None:
    torch.manual_seed(1)
    x = torch.randn(16, 2, 6, 6)
    qmod = hgqir.quantize_torch(Movers(), x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    prj = hgqir.emit(g, "verilog", tmp_path / "rtl").compile()
    xs = (3 * torch.randn(10, 2, 6, 6)).double().numpy()
    assert np.array_equal(prj.predict(xs), g.run(xs))


def test_stack_is_exact() -> None:
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([self.a(x), self.b(x), self.a(x) * 0.5], dim=1).flatten(1)

    torch.manual_seed(6)
    x = torch.randn(32, 4)
    qmod = hgqir.quantize_torch(Stack(), x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    check_bit_exact(qmod, g, [x, 5 * x])
    with pytest.raises(hgqir.UnsupportedOpError, match="batch axis"):
        hgqir.from_torch(Fn(lambda v: torch.stack([v, v], dim=0)), x[:1])
