"""hgqir.ShimConfig on the PyTorch shim: every field honoured, or refused with a clear error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hgqir.frontends.shim_config import BetaSchedule, ShimConfig
from hgqir.frontends.torch.options import ConfigError
from hgqir.frontends.torch.testing import check_bit_exact, step_values
from torch import nn

import hgqir

X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 2


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_config_and_old_keywords_give_the_same_shim() -> None:
    cfg = ShimConfig(weight={"f": 4, "granularity": "channel"}, activation={"overflow": "SAT"}, bit_l1=1e-3)
    a = hgqir.quantize_torch(_net(), X, config=cfg)
    b = hgqir.quantize_torch(
        _net(), X, weight={"f": 4, "granularity": "channel"}, activation={"overflow": "SAT"}, bit_l1=1e-3
    )
    assert a.config == b.config and a.config is cfg
    assert {k: v.tolist() for k, v in a.bitwidths().items()} == {k: v.tolist() for k, v in b.bitwidths().items()}
    c = hgqir.quantize_torch(_net(), X, config=cfg, weight={"f": 2})  # keywords over config=
    assert c.config.weight.f == 2.0 and c.config.activation.overflow.name == "SAT"


def test_beta_from_config_and_argument() -> None:
    assert hgqir.quantize_torch(_net(), X, config=ShimConfig(beta=3e-4)).beta == pytest.approx(3e-4)
    assert hgqir.quantize_torch(_net(), X, config=ShimConfig(beta=3e-4), beta=1e-6).beta == pytest.approx(1e-6)
    assert hgqir.quantize_torch(_net(), X).beta == 0.0


def test_set_epoch_follows_the_schedule() -> None:
    schedule = BetaSchedule(1e-6, 1e-4, epochs=4)
    qmod = hgqir.quantize_torch(_net(), X, config=ShimConfig(beta_schedule=schedule))
    assert qmod.beta == pytest.approx(1e-6)
    for epoch in (0, 1, 2, 5):
        assert qmod.set_epoch(epoch) == pytest.approx(schedule(epoch), rel=1e-6)
        assert float(qmod.state_dict()["_beta"]) == pytest.approx(schedule(epoch), rel=1e-6)
    fixed = hgqir.quantize_torch(_net(), X, beta=2e-5)
    assert fixed.set_epoch(3) == pytest.approx(2e-5)  # no schedule: beta stays


@pytest.mark.parametrize("native", ["0", "1"])
def test_i_decay_shrinks_running_ranges(native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", native)
    ranges = {}
    for decay in (0.0, 0.5):
        qmod = hgqir.quantize_torch(_net(), X, i_decay=decay).train()
        with torch.no_grad():
            qmod(X * 4)  # wide values once
        qmod.regularization().backward()
        for _ in range(3):
            out = qmod(X)
            (out.square().mean() + qmod.regularization()).backward()
        ranges[decay] = qmod.bank.vmax.clone()
    seen = ranges[0.0] > 0
    assert torch.all(ranges[0.5][seen] < ranges[0.0][seen])  # shrunk towards the recent batches
    assert torch.all(ranges[0.5] >= -np.inf)


def test_i_decay_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    shim = hgqir.quantize_torch(_net(), X, i_decay=0.3, beta=1e-3)
    results = []
    for native in ("0", "1"):
        monkeypatch.setenv("HGQIR_TORCH_NATIVE", native)
        q = copy.deepcopy(shim).train()
        for scale in (4.0, 1.0, 1.0):
            out = q(X * scale)
            (out.square().mean() + q.regularization()).backward()
        results.append((q.bank.vmax.clone(), q.bank.vmin.clone(), out.detach()))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_signed_forces_the_sign_bit() -> None:
    x = X.abs()  # non-negative inputs: unsigned unless forced
    plain = hgqir.quantize_torch(_net(), x)
    forced = hgqir.quantize_torch(_net(), x, input={"signed": True})
    g0, g1 = (hgqir.from_torch(q, x, calibration=x) for q in (plain, forced))
    assert int(g0.inputs[0].type.k.max()) == 0 and int(g1.inputs[0].type.k.min()) == 1
    check_bit_exact(forced, g1, [x, -x])
    assert forced.ebops().item() == hgqir.bops(g1).total
    with pytest.raises(ConfigError, match="signed applies to input, activation, output"):
        hgqir.quantize_torch(_net(), X, weight={"signed": True})


def test_table_bits_limits_tables() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    with pytest.raises(hgqir.HgqirError, match="sigmoid table would be indexed by a .*table_bits"):
        hgqir.from_torch(hgqir.quantize_torch(net, X, table_bits=6), X)
    with pytest.raises(ConfigError, match="table_bits"):
        hgqir.quantize_torch(net, X, table_bits=99)


def test_softmax_sum_f_default_is_8() -> None:
    net = nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=1))
    qmod = hgqir.quantize_torch(net, X)
    g = hgqir.from_torch(qmod, X, calibration=X)
    softmax = next(op for op in g.ops if op.kind.value == "softmax")
    assert softmax.attrs["inv_in"][2] == 8
    check_bit_exact(qmod, g, [X])


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Linear(4, 3)
        self.conv_b = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv_a(x) + self.conv_b(x) * 2.0)


def test_overrides_by_module_path_node_name_and_pattern() -> None:
    cfg = ShimConfig(
        overrides={"conv_*": {"weight": {"f": 2}}, "mul": {"constant": {"f": 3}}, "head": {"bias": {"f": 1}}}
    )
    qmod = hgqir.quantize_torch(Branches(), X, config=cfg)
    types = qmod.quantizer_types()
    by_name = {qmod.bank.specs[n].name: t for n, t in types.items()}
    assert int(by_name["conv_a.weight"][2].max()) == 2 and int(by_name["conv_b.weight"][2].max()) == 2
    assert int(by_name["head.weight"][2].max()) == 6 and int(by_name["head.bias"][2].max()) == 1
    assert int(by_name["mul_c1"][2].max()) == 3
    check_bit_exact(qmod, hgqir.from_torch(qmod, X, calibration=X), [X])


def test_override_matching_nothing_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"\['dense\*'\] match no layer.*conv_a"):
        hgqir.quantize_torch(Branches(), X, config=ShimConfig(overrides={"dense*": {"weight": {"f": 2}}}))


def test_step_values_in_double() -> None:
    net = nn.Sequential(nn.Linear(3, 2))
    values = step_values(net, torch.randn(8, 3, generator=torch.Generator().manual_seed(2)), ShimConfig(beta=1e-3))
    assert values["out"].dtype == torch.float64 and values["out"].shape == (8, 2)
    assert values["ebops"] > 0 and values["regularization"] == pytest.approx(1e-3 * values["ebops"])
    assert values["grad_f"].dtype == torch.float64 and float(values["grad_f"].abs().sum()) > 0
    assert set(values["grad_weights"]) == {"0.weight", "0.bias"}
