"""Plain float modules import straight to the IR (no training shim), at the shim's quantization
points with its initial types: the graph equals the one imported from a fresh, calibrated shim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hgqir.frontends.torch.importer import plain
from hgqir.frontends.torch.importer.plain import PlainImportWarning
from torch import nn

import hgqir


class AddScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.s = nn.Parameter(torch.linspace(-1.0, 1.5, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(x))
        return torch.sigmoid(h * self.s + 0.3) - 0.5 * h


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    )


MODELS = [(_mlp, (4,)), (_cnn, (2, 6, 6)), (AddScale, (4,))]


def _prepare(make: object, shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = make()  # type: ignore[operator]
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval(), torch.randn(200, *shape, generator=torch.Generator().manual_seed(1)) * 2


@pytest.mark.parametrize(("make", "shape"), MODELS)
@pytest.mark.parametrize("options", [{}, {"weight": {"f": 3, "granularity": "channel"}, "activation": {"f": 4}}])
def test_plain_import_equals_calibrated_fresh_shim(make: object, shape: tuple[int, ...], options: dict) -> None:
    net, x = _prepare(make, shape)
    with pytest.warns(PlainImportWarning, match="plain float module"):
        g = hgqir.from_torch(net, x[:16], calibration=x, **options)
    shim = hgqir.from_torch(hgqir.quantize_torch(net, x[:16], **options), x, calibration=x)
    for data in (x.numpy(), 3 * x.numpy()):  # beyond the calibration range too (both wrap alike)
        assert np.array_equal(g.run(data.astype(np.float64)), shim.run(data.astype(np.float64)))
    assert hgqir.bops(g).total == hgqir.bops(shim).total
    types = {v.name: v.type for v in g.inputs}
    assert types == {v.name: v.type for v in shim.inputs}


def test_plain_import_builds_no_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    from hgqir.frontends.torch.shim import build

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plain import built a shim body")

    monkeypatch.setattr(build, "build_body", refuse)
    net, x = _prepare(_mlp, (4,))
    with pytest.warns(PlainImportWarning, match=r"f=6.*200 calibration samples.*WRAP overflow"):
        g = hgqir.from_torch(net, x, calibration=x)
    assert g.run(x.numpy()).shape == (200, 3)


def test_calibration_policy_is_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue #15 will add a margin: one line in plain.POLICY changes every activation type
    net, x = _prepare(_mlp, (4,))
    with pytest.warns(PlainImportWarning):
        before = hgqir.from_torch(net, x, calibration=x)
    monkeypatch.setattr(plain, "POLICY", plain.CalibrationPolicy(margin_bits=1))
    with pytest.warns(PlainImportWarning):
        after = hgqir.from_torch(net, x, calibration=x)
    quant = [(a, b) for a, b in zip(before.ops, after.ops, strict=True) if a.kind.value in ("input", "quant")]
    assert quant
    for a, b in quant:
        t0, t1 = a.result.type, b.result.type
        assert np.array_equal(t1.i, t0.i + 1) and np.array_equal(t1.f, t0.f)
