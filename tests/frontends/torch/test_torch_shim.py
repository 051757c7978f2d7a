"""The trainable shim as a PyTorch module: state, dtype/device moves, EBOPs, calibration, configs."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from hgqir.frontends.torch import QuantizedModule, calibrate
from hgqir.frontends.torch.testing import check_bit_exact, shim_outputs
from torch import nn

import hgqir

torch.set_num_threads(1)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


def _trained(beta: float = 1e-5, steps: int = 5, **options) -> tuple[QuantizedModule, torch.Tensor]:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    x = torch.randn(64, 1, 6, 6)
    qmod = hgqir.quantize_torch(small_cnn(), x, beta=beta, **options)
    opt = torch.optim.Adam(qmod.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (qmod(x).square().mean() + qmod.regularization()).backward()
        opt.step()
    return qmod, x


def test_is_an_fx_module_with_learnable_bitwidths() -> None:
    qmod, x = _trained()
    assert isinstance(qmod.body, torch.fx.GraphModule)
    names = dict(qmod.named_parameters())
    assert "body.hgq.f" in names and "body.0.weight" in names  # the user's parameters keep their paths
    assert qmod(x).shape == (64, 3)


def test_original_module_is_left_alone() -> None:
    torch.manual_seed(0)
    net = small_cnn()
    before = copy.deepcopy(net.state_dict())
    qmod = hgqir.quantize_torch(net, torch.randn(8, 1, 6, 6))
    with torch.no_grad():
        qmod.body.get_parameter("0.weight").add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_state_dict_round_trip() -> None:
    qmod, x = _trained()
    calibrate(qmod, x)
    fresh = hgqir.quantize_torch(small_cnn(), x)
    fresh.load_state_dict(qmod.state_dict())
    assert fresh.beta == pytest.approx(qmod.beta)
    for a, b in zip(shim_outputs(qmod, x), shim_outputs(fresh, x), strict=True):
        assert np.array_equal(a, b)
    assert fresh.ebops().item() == qmod.ebops().item()
    assert all(np.array_equal(v, fresh.bitwidths()[k]) for k, v in qmod.bitwidths().items())


def test_deepcopy_and_pickle_keep_everything() -> None:
    qmod, x = _trained()
    buf = io.BytesIO()
    torch.save(qmod, buf)
    buf.seek(0)
    for twin in (copy.deepcopy(qmod), torch.load(buf, weights_only=False)):
        assert torch.equal(twin.eval()(x), qmod.eval()(x))
        assert hgqir.dumps(hgqir.from_torch(twin, x)) == hgqir.dumps(hgqir.from_torch(qmod, x))


def test_dtype_and_device_moves() -> None:
    qmod, x = _trained()
    qmod.eval()
    y32 = qmod(x)
    qmod.double().to("cpu")
    assert qmod.bank.f.dtype == torch.float64 and qmod(x.double()).dtype == torch.float64
    assert torch.allclose(qmod(x.double()).float(), y32, atol=1e-6)
    qmod.float()
    assert torch.equal(qmod(x), y32)
    qmod.train()
    qmod.double()(x.double()).sum().backward()  # training works in float64 too
    assert qmod.bank.f.grad is not None


def test_ebops_is_differentiable_and_regularization_is_beta_times_ebops() -> None:
    qmod, _ = _trained(beta=3e-4)
    qmod.zero_grad()
    e = qmod.ebops()
    e.backward()
    grad = qmod.bank.f.grad
    assert grad is not None and float(grad.sum()) > 0  # more fractional bits cost more EBOPs
    assert qmod.regularization().item() == pytest.approx(3e-4 * e.item())
    qmod.beta = 0.0
    assert qmod.regularization().item() == 0.0


def test_bit_l1_adds_to_the_regularization() -> None:
    qmod, _ = _trained(beta=0.0, bit_l1=1e-3)
    assert qmod.regularization().item() > 0.0


def test_zero_width_weights_are_exactly_zero_everywhere() -> None:
    qmod, x = _trained()
    bank = qmod.bank
    n = next(n for n, s in enumerate(bank.specs) if s.name == "0.weight")
    off, size = bank.f_offset(n), bank.specs[n].group_size
    with torch.no_grad():
        bank.f[off : off + size : 2] = -20.0  # prune every other element of the first conv's weight
    calibrate(qmod, x)
    g = hgqir.from_torch(qmod, x)
    w_ir = next(op for op in g.ops if op.kind.value == "const" and op.result.name.endswith("_w"))
    assert int(w_ir.result.type.zero_mask.sum()) >= size // 2
    widths = qmod.bitwidths()["0.weight"].reshape(-1)
    assert np.all(widths[::2] <= 0)
    for train in (True, False):
        qmod.train(train)
        w = qmod.body.hgq(*[qmod.body.get_parameter(bank.specs[m].source) for m in bank.param_specs])[4 * n]
        assert torch.count_nonzero(w.reshape(-1)[::2]) == 0
    check_bit_exact(qmod, g, [x, 4 * x])
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_calibration_sets_ranges_from_data_only() -> None:
    qmod, x = _trained()
    calibrate(qmod, x * 0.01)
    small = qmod.bitwidths()["input_q"]
    calibrate(qmod, x * 100)
    assert (qmod.bitwidths()["input_q"] > small).all()  # ranges are recomputed, not accumulated
    assert qmod.bank.f.dtype == torch.float32 and qmod.training


@pytest.mark.parametrize(
    "options",
    [
        {"weight": {"granularity": "channel"}, "activation": {"granularity": "channel"}},
        {
            "weight": {"granularity": "tensor"},
            "bias": {"granularity": "tensor"},
            "activation": {"granularity": "tensor"},
        },
        {"activation": {"overflow": "SAT"}, "input": {"overflow": "SAT_SYM", "round": "TRN"}},
        {"weight": {"overflow": "SAT", "i": 0}, "activation": {"round": "RND_CONV"}},
        {"activation": {"round": "TRN", "f": 3}, "weight": {"round": "RND_CONV", "f": 2}},
    ],
)
def test_configurations_stay_bit_exact(options: dict) -> None:  # type: ignore[type-arg]
    qmod, x = _trained(**options)
    g = hgqir.from_torch(qmod, x, calibration=x)
    check_bit_exact(qmod, g, [x, 4 * x, 30 * torch.randn_like(x)])
    assert qmod.ebops().item() == hgqir.bops(g).total


def test_granularity_gives_uniform_types() -> None:
    qmod, x = _trained(weight={"granularity": "tensor"}, activation={"granularity": "tensor"})
    g = hgqir.from_torch(qmod, x, calibration=x)
    quants = [op for op in g.ops if op.kind.value == "quant"]
    assert quants and all(op.result.type.is_uniform for op in quants)


def test_saturating_quantizers_learn_integer_bits() -> None:
    qmod, _ = _trained(activation={"overflow": "SAT"}, steps=1)
    i0 = qmod.bank.i.detach().clone()
    _train_more(qmod, 20)
    assert qmod.bank.i.grad is not None and not torch.equal(qmod.bank.i.detach(), i0)


def _train_more(qmod: QuantizedModule, steps: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 1, 6, 6) * 3
    opt = torch.optim.SGD(qmod.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        (qmod(x) - 5).square().mean().backward()
        opt.step()


def test_float32_eval_is_close_to_float64() -> None:
    qmod, x = _trained()
    g = hgqir.from_torch(qmod, x, calibration=x)
    y32 = qmod.eval()(x).detach().numpy()
    assert np.allclose(y32, g.run(x.numpy()), atol=1e-5)


def test_wrapped_shim_is_imported() -> None:
    qmod, x = _trained()
    wrapped = torch.nn.DataParallel(qmod)  # same .module convention as DistributedDataParallel
    assert hgqir.dumps(hgqir.from_torch(wrapped, x)) == hgqir.dumps(hgqir.from_torch(qmod, x))
