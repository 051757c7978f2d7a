"""Smooth activations as exact tables (``lut``): shim, import, interpreter and plain import.

Each activation is trained a little inside a small model, imported with calibration and
compared exactly with the shim in float64 (inputs inside and far outside the calibrated
range); the table references are checked against PyTorch's own functions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hgqir.frontends.activations import SMOOTH_NUMPY
from hgqir.frontends.torch.smooth import torch_fn
from hgqir.frontends.torch.tables import lut_out_kif
from hgqir.frontends.torch.testing import Fn, check_bit_exact
from torch import nn

import hgqir
from hgqir.ir import OpKind

ACTIVATIONS = {
    "elu": nn.ELU(),
    "elu_function": Fn(lambda x: F.elu(x)),
    "selu": nn.SELU(),
    "silu_function": Fn(F.silu),
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "softplus": nn.Softplus(),
    "mish": nn.Mish(),
    "hardswish": nn.Hardswish(),
    "hardsigmoid_function": Fn(F.hardsigmoid),
    "relu6": nn.ReLU6(),
    "hardtanh_function": Fn(F.hardtanh),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_smooth_activation_bit_exact(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), ACTIVATIONS[name], nn.Linear(6, 3))
    x = torch.randn(48, 4) * 2
    qmod = hgqir.quantize_torch(net, x, beta=1e-5)
    opt = torch.optim.Adam(qmod.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (qmod(x).square().mean() + qmod.regularization()).backward()
        opt.step()
    g = hgqir.from_torch(qmod, x, calibration=x)
    assert [op.kind for op in g.ops].count(OpKind.LUT) == 1
    check_bit_exact(qmod, g, [x, 4 * x, 40 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total


@pytest.mark.parametrize("func", sorted(SMOOTH_NUMPY))
def test_table_reference_matches_torch(func: str) -> None:
    xs = np.linspace(-12.0, 12.0, 2001)
    ref = SMOOTH_NUMPY[func](xs)
    got = torch_fn(func)(torch.from_numpy(xs)).numpy()
    np.testing.assert_allclose(ref, got, rtol=0, atol=1e-12)
    k, _, _ = lut_out_kif(func, 8)
    assert k == int(ref.min() < 0)


def test_plain_import_follows_the_float_model() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.ELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 2)).double()
    x = torch.randn(256, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match="plain float module"):
        g = hgqir.from_torch(net, x[:1], calibration=x[:200])
    fresh = x[200:].numpy()
    with torch.no_grad():
        want = net(x[200:]).numpy()
    assert np.abs(g.run(fresh) - want).max() < 0.1


@pytest.mark.parametrize(
    "act, why",
    [
        (nn.ELU(alpha=0.5), "ELU with alpha=0.5"),
        (nn.Softplus(beta=2.0), "Softplus with beta=2.0"),
        (Fn(lambda x: F.softplus(x, 1.0, 5.0)), "threshold=5.0"),
        (nn.Hardtanh(-2.0, 2.0), "Hardtanh"),
    ],
)
def test_unsupported_parameters_are_refused(act: nn.Module, why: str) -> None:
    net = nn.Sequential(nn.Linear(3, 3), act)
    with pytest.raises(hgqir.UnsupportedOpError, match=why):
        hgqir.from_torch(net, torch.randn(1, 3))
