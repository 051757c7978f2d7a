"""Every supported PyTorch op alone and in small models: the float64 shim equals the graph.

Each case builds a shim, takes a few optimizer steps (so the types are not the initial ones),
calibrates, imports, and then checks exact equality on the calibration data, on data four
times outside it and on wide random data; EBOPs of the shim must equal ``hgqir.bops``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hgqir.frontends.torch.testing import check_bit_exact
from torch import nn

import hgqir

torch.set_num_threads(1)


class Lambda(nn.Module):
    def __init__(self, fn):  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fn(x)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)

    def forward(self, x):  # type: ignore[no-untyped-def]
        u, v = self.a(x), self.b(x)
        return torch.cat([u * v - 0.75 * u, v + 1.5, x - u], dim=1)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding="same")
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(4, 3, 2, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2, padding=1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.pool(F.relu(self.bn(self.c1(x))))
        y = self.gap(self.avg(torch.tanh(self.c2(y))))
        return torch.softmax(self.fc(torch.flatten(y, 1)), dim=1)


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv1d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm1d(5)
        self.pool = nn.AvgPool1d(2)
        self.mp = nn.MaxPool1d(2, stride=1)
        self.fc = nn.Linear(15, 2)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.mp(self.pool(torch.sigmoid(self.bn(self.c(x)))))
        return self.fc(y.view(y.size(0), -1))


class Scaled(nn.Module):
    """Learnable per-channel scale and a buffer offset used directly in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.scale = nn.Parameter(torch.tensor([0.5, -1.25, 2.0]).view(3, 1, 1))
        self.register_buffer("offset", torch.tensor([[[[0.25]], [[0.0]], [[-0.5]]]]))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.conv(x) * self.scale + self.offset


class Nested(nn.Module):
    """Submodules inside submodules, a layer used twice, reshapes as functions and Unflatten."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU())
        self.shared = nn.Linear(6, 6)
        self.unflat = nn.Unflatten(1, (2, 3))

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.shared(self.shared(self.block(x)))
        y = torch.unsqueeze(self.unflat(y), 1)
        return torch.reshape(torch.squeeze(y, 1), (-1, 6)) - 1.0


def seq(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers)


# name -> (module factory, example input shape without batch)
CASES = {
    "linear": (lambda: nn.Linear(5, 3), (5,)),
    "linear_no_bias": (lambda: nn.Linear(5, 3, bias=False), (5,)),
    "linear_rank2": (lambda: nn.Linear(4, 3), (5, 4)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3), (3, 9)),
    "conv1d_stride_pad": (lambda: nn.Conv1d(3, 4, 4, stride=2, padding=2), (3, 9)),
    "conv1d_same_even": (lambda: nn.Conv1d(2, 3, 4, padding="same"), (2, 7)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3), (2, 6, 6)),
    "conv2d_stride_pad": (lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)), (2, 7, 6)),
    "conv2d_same": (lambda: nn.Conv2d(2, 3, (2, 3), padding="same"), (2, 5, 6)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4), (4,)),
    "batchnorm1d_ncl": (lambda: nn.BatchNorm1d(3), (3, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (3, 4, 4)),
    "relu_module": (lambda: seq(nn.Linear(4, 4), nn.ReLU()), (4,)),
    "relu_function": (lambda: seq(nn.Linear(4, 4), Lambda(F.relu)), (4,)),
    "relu_torch": (lambda: seq(nn.Linear(4, 4), Lambda(torch.relu)), (4,)),
    "relu_method": (lambda: seq(nn.Linear(4, 4), Lambda(lambda x: x.relu())), (4,)),
    "sigmoid": (lambda: seq(nn.Linear(4, 4), nn.Sigmoid()), (4,)),
    "sigmoid_function": (lambda: seq(nn.Linear(4, 4), Lambda(torch.sigmoid)), (4,)),
    "tanh": (lambda: seq(nn.Linear(4, 4), nn.Tanh()), (4,)),
    "tanh_function": (lambda: seq(nn.Linear(4, 4), Lambda(torch.tanh)), (4,)),
    "softmax": (lambda: seq(nn.Linear(4, 5), nn.Softmax(dim=-1)), (4,)),
    "softmax_channels": (lambda: seq(nn.Conv1d(2, 3, 1), nn.Softmax(dim=1)), (2, 4)),
    "maxpool1d": (lambda: seq(nn.Conv1d(2, 3, 1), nn.MaxPool1d(3, stride=2, padding=1)), (2, 8)),
    "maxpool2d": (lambda: seq(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2)), (2, 6, 6)),
    "avgpool1d": (lambda: seq(nn.Conv1d(2, 3, 1), nn.AvgPool1d(3, stride=2, padding=1)), (2, 8)),
    "avgpool2d": (lambda: seq(nn.Conv2d(2, 3, 1), nn.AvgPool2d(3, stride=1)), (2, 6, 6)),
    "avgpool2d_no_pad_count": (
        lambda: seq(nn.Conv2d(2, 3, 1), nn.AvgPool2d(2, padding=1, count_include_pad=False)),
        (2, 5, 5),
    ),
    "adaptive_avg1d": (lambda: seq(nn.Conv1d(2, 3, 1), nn.AdaptiveAvgPool1d(1)), (2, 6)),
    "adaptive_avg2d": (lambda: seq(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), (2, 5, 3)),
    "adaptive_max2d": (lambda: seq(nn.Conv2d(2, 3, 1), nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten()), (2, 5, 3)),
    "flatten_module": (lambda: seq(nn.Conv2d(2, 3, 2), nn.Flatten(), nn.Linear(3 * 9, 2)), (2, 4, 4)),
    "flatten_torch": (
        lambda: seq(nn.Conv2d(2, 3, 2), Lambda(lambda x: torch.flatten(x, 1)), nn.Linear(27, 2)),
        (2, 4, 4),
    ),
    "flatten_method": (lambda: seq(nn.Conv2d(2, 3, 2), Lambda(lambda x: x.flatten(1)), nn.Linear(27, 2)), (2, 4, 4)),
    "view": (lambda: seq(nn.Conv2d(2, 3, 2), Lambda(lambda x: x.view(x.size(0), -1)), nn.Linear(27, 2)), (2, 4, 4)),
    "reshape": (lambda: seq(nn.Linear(6, 6), Lambda(lambda x: x.reshape(-1, 2, 3)), nn.Linear(3, 2)), (6,)),
    "permute": (lambda: seq(nn.Conv1d(4, 4, 1), Lambda(lambda x: x.permute(0, 2, 1)), nn.Linear(4, 3)), (4, 5)),
    "permute_torch": (
        lambda: seq(nn.Conv2d(2, 3, 1), Lambda(lambda x: torch.permute(x, (0, 3, 1, 2))), nn.Flatten()),
        (2, 3, 4),
    ),
    "cat": (lambda: Lambda(lambda x: torch.cat([x, 2 * x], dim=1)), (3, 4)),
    "cat_last": (lambda: Lambda(lambda x: torch.cat([x, x * x], dim=-1)), (3, 4)),
    "add_sub_mul": (lambda: Residual(), (6,)),
    "scalar_ops": (lambda: Lambda(lambda x: (x * 0.5 + 1.0) - x * x), (5,)),
    "nested_shared": (lambda: Nested(), (6,)),
    "attribute_operands": (lambda: Scaled(), (2, 3, 4)),
    "dropout_identity": (
        lambda: seq(nn.Linear(4, 4), nn.Dropout(0.5), nn.Identity(), Lambda(lambda x: F.dropout(x, 0.2))),
        (4,),
    ),
    "convnet": (lambda: ConvNet(), (2, 8, 8)),
    "conv1dnet": (lambda: Conv1dNet(), (3, 8)),
}


def _train_a_little(qmod: nn.Module, x: torch.Tensor) -> None:
    opt = torch.optim.Adam(qmod.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        out = qmod(x)
        (out.square().mean() + qmod.regularization()).backward()
        opt.step()


@pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_bit_exact(name: str) -> None:
    make, shape = CASES[name]
    torch.manual_seed(0)
    net = make()
    x = torch.randn(48, *shape) * 2
    with torch.no_grad():  # give batchnorms non-trivial running statistics
        net.train()
        for _ in range(3):
            net(x + 0.5)
    net.eval()
    qmod = hgqir.quantize_torch(net, x, beta=1e-5)
    qmod.train()
    _train_a_little(qmod, x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    check_bit_exact(qmod, g, [x, 4 * x, 20 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total
    assert hgqir.dumps(hgqir.loads(hgqir.dumps(g))) == hgqir.dumps(g)


def test_two_inputs_two_outputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, a, b):  # type: ignore[no-untyped-def]
            h = self.fc(a) + b
            return h, torch.relu(h * a)

    torch.manual_seed(0)
    a, b = torch.randn(32, 3), torch.randn(32, 3)
    qmod = hgqir.quantize_torch(Two(), (a, b))
    g = hgqir.from_torch(qmod, (a, b), calibration=(a, b))
    assert len(g.inputs) == 2 and len(g.outputs) == 2
    check_bit_exact(qmod, g, [(a, b), (4 * a, -3 * b)])


def test_graph_keeps_pytorch_layout() -> None:
    """Conv models take NCHW in g.run: transposes sit at the boundary and around flatten."""
    torch.manual_seed(0)
    net = seq(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 5, 2))
    x = torch.randn(16, 2, 6, 7)
    g = hgqir.from_torch(hgqir.quantize_torch(net, x), x, calibration=x)
    kinds = [op.kind.value for op in g.ops]
    assert g.inputs[0].shape == (2, 6, 7)
    assert kinds.count("transpose") == 2  # NCHW -> NHWC before the conv, back before the flatten
    assert g.run(x.numpy()).shape == (16, 2)


def test_float_module_imports_close_to_float() -> None:
    """A plain module gets the initial types (8 input / 6 weight fractional bits) and calibration."""
    torch.manual_seed(0)
    net = seq(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(256, 4)
    g = hgqir.from_torch(net, x[:8], calibration=x)
    y = g.run(x.numpy())
    ref = net(x).detach().numpy()
    assert np.abs(y - ref).max() < 0.1
    assert int(g.inputs[0].type.f.max()) == 8
    g2 = hgqir.from_torch(net, x[:8], calibration=x, weight={"f": 10}, activation={"f": 10})
    assert np.abs(g2.run(x.numpy()) - ref).max() < np.abs(y - ref).max()
