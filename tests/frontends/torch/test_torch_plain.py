"""Plain float modules import straight to the IR (no training shim), at the shim's quantization
points with its initial types: the graph equals the one imported from a fresh, calibrated shim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hgqir.frontends.calibration import GUARD_BITS
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
    """The same quantizers as a calibrated shim, with the same guard bit on every live activation
    element (hgqir.frontends.calibration; the shim's calibration keeps it too); without the
    margin the shim's types are one integer bit tighter."""
    from hgqir.frontends.torch.importer.convert import to_graph
    from hgqir.frontends.torch.shim.calibrate import calibrate

    net, x = _prepare(make, shape)
    with pytest.warns(PlainImportWarning, match="plain float module"):
        g = hgqir.from_torch(net, x[:16], calibration=x, **options)
    qmod = hgqir.quantize_torch(net, x[:16], **options)
    shim = hgqir.from_torch(qmod, x, calibration=x)
    tight = to_graph(calibrate(qmod, x, margin_bits=0), "tight")
    xd = x.numpy().astype(np.float64)
    assert np.array_equal(g.run(xd), shim.run(xd)) and np.array_equal(g.run(xd), tight.run(xd))
    acts = [(a, b, c) for a, b, c in zip(g.ops, shim.ops, tight.ops, strict=True) if a.kind.value in ("input", "quant")]
    assert acts and all(a.kind is b.kind for a, b in zip(g.ops, shim.ops, strict=True))
    for a, b, c in acts:
        ta, tb, tc = a.result.type, b.result.type, c.result.type
        live = ~tc.zero_mask
        assert np.array_equal(ta.i, tb.i) and np.array_equal(ta.f, tb.f)
        assert np.array_equal(tb.i, np.where(live, tc.i + GUARD_BITS, tc.i))


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
    # one line in plain.POLICY changes every activation type (live elements only)
    net, x = _prepare(_mlp, (4,))
    with pytest.warns(PlainImportWarning):
        guarded = hgqir.from_torch(net, x, calibration=x)
    monkeypatch.setattr(plain, "POLICY", plain.CalibrationPolicy(margin_bits=0))
    with pytest.warns(PlainImportWarning):
        exact = hgqir.from_torch(net, x, calibration=x)
    quant = [(a, b) for a, b in zip(exact.ops, guarded.ops, strict=True) if a.kind.value in ("input", "quant")]
    assert quant
    for a, b in quant:
        t0, t1 = a.result.type, b.result.type
        assert np.array_equal(t1.i, np.where(t0.zero_mask, t0.i, t0.i + 1)) and np.array_equal(t1.f, t0.f)


def test_plain_import_never_wraps_on_new_data() -> None:
    """The issue's two-input add: fresh data and inputs up to 5 % above the calibration maximum
    agree with the float model within the quantization error (before the guard bit, 112 of
    76,800 outputs wrapped by up to 1.99)."""

    class Add(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.add(a, b)

    gen = torch.Generator().manual_seed(0)
    cal = tuple(torch.rand(2000, 32, generator=gen, dtype=torch.float64) for _ in range(2))
    with pytest.warns(PlainImportWarning, match="1 guard bit"):
        g = hgqir.from_torch(Add(), tuple(c[:8] for c in cal), calibration=cal)
    fresh = tuple(torch.rand(2400, 32, generator=gen, dtype=torch.float64) for _ in range(2))
    beyond = tuple(c.amax(dim=0) * (1 + 0.05 * torch.rand(2400, 32, generator=gen, dtype=torch.float64)) for c in cal)
    f_in, f_out = int(g.inputs[0].type.f.min()), int(g.outputs[0].type.f.min())
    bound = 2 * 2.0 ** -(f_in + 1) + 2.0 ** -(f_out + 1)  # two inputs and the output rounded to nearest
    for a, b in (fresh, beyond):
        err = np.abs(g.run(a.numpy(), b.numpy()) - (a + b).numpy())
        assert err.max() <= bound  # nothing wrapped


def test_shim_calibration_keeps_a_guard_bit() -> None:
    """A shim's WRAP quantizers calibrate with one guard integer bit: inputs 5 % above the
    calibration maximum never wrap; calibrated with ``margin_bits=0`` they do."""
    from hgqir.frontends.torch.importer.convert import to_graph
    from hgqir.frontends.torch.shim.calibrate import calibrate

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    rng = np.random.default_rng(1)
    cal = torch.from_numpy(rng.uniform(0, 1, (1000, 16)).astype(np.float32))
    beyond = cal.numpy().max(axis=0) * (1 + 0.05 * rng.uniform(0, 1, (1000, 16)))
    qmod = hgqir.quantize_torch(net, cal[:16])
    g = hgqir.from_torch(qmod, cal[:16], calibration=cal)

    assert not wraps(g, cal.numpy().astype(np.float64)) and not wraps(g, beyond)
    tight = to_graph(calibrate(qmod, cal, margin_bits=0), "tight")
    assert not wraps(tight, cal.numpy().astype(np.float64)) and wraps(tight, beyond)
    with pytest.raises(ValueError, match="margin_bits"):
        calibrate(qmod, cal, margin_bits=-1)


def test_a_value_that_can_be_negative_keeps_its_sign_bit() -> None:
    """A linear output that stayed positive on the calibration data keeps a sign bit (the relu
    output after it does not need one), in plain import and in a shim, so fresh negative values
    do not wrap; a shim calibrated with ``margin_bits=0`` wraps."""
    from hgqir.frontends.torch.importer.convert import to_graph
    from hgqir.frontends.torch.shim.calibrate import calibrate

    net = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 2), torch.nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-0.1875)
    cal = torch.linspace(0.25, 1.0, 64, dtype=torch.float64)[:, None]
    fresh = (cal[:8] / 4).numpy()  # inside the input's range; the first linear output goes negative

    with pytest.warns(PlainImportWarning):
        g = hgqir.from_torch(net, cal[:4], calibration=cal)
    assert g.inputs[0].type.k.max() == 0 and not wraps(g, fresh)
    (out_q,) = [
        op for op in g.ops if op.kind is hgqir.OpKind.QUANT and op.operands[0].producer.kind is hgqir.OpKind.RELU
    ]
    assert out_q.result.type.k.max() == 0  # non-negative by construction: no sign bit
    qmod = hgqir.quantize_torch(net.float(), cal[:4].float())
    shim = hgqir.from_torch(qmod, cal[:4].float(), calibration=cal.float())
    assert not wraps(shim, fresh)
    assert wraps(to_graph(calibrate(qmod, cal.float(), margin_bits=0), "tight"), fresh)


def wraps(graph: hgqir.Graph, x: np.ndarray) -> bool:
    """Whether any WRAP quantizer or input of ``graph`` wraps on ``x`` (saturating changes the result)."""
    sat = hgqir.loads(hgqir.dumps(graph))
    for op in sat.ops:
        if op.kind in (hgqir.OpKind.QUANT, hgqir.OpKind.INPUT) and op.attrs["overflow"] is hgqir.OverflowMode.WRAP:
            op.attrs["overflow"] = hgqir.OverflowMode.SAT
    return not np.array_equal(sat.run(x), graph.run(x))
