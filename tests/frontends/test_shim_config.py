"""One option language: the same ShimConfig gives the same shim in Keras and in PyTorch.

An equivalent small model in both frameworks (same float64 weights), the same config: both
shims, calibrated on the same data, import to graphs with the same ops that compute the same
values on fresh data, and cost the same EBOPs (per-framework tests pin the training math). Also: Keras honours the config's
fields and refuses what it cannot do, and the old Keras keywords keep working.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hgqir.frontends.keras.shim.options import ConfigError  # noqa: E402
from keras_testlib import float64_scope  # noqa: E402

import hgqir  # noqa: E402

L = keras.layers

CONFIGS = {
    "default": hgqir.ShimConfig(),
    "sat": hgqir.ShimConfig(
        activation={"overflow": "SAT", "i": 3, "f": 5},
        weight={"f": 4, "round": "TRN"},
        bias={"f": 7},
        input={"f": 7, "round": "RND_CONV"},
    ),
    "tensor-override": hgqir.ShimConfig(
        activation={"granularity": "tensor", "f": 4},
        overrides={"second": {"weight": {"f": 3}, "activation": {"f": 2}}},
    ),
    "channel": hgqir.ShimConfig(activation={"granularity": "channel"}, weight={"granularity": "channel"}),
}


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _pair(seed: int = 0) -> tuple[keras.Model, torch.nn.Module]:
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(5, 6)), rng.normal(size=6) * 0.3
    w2, b2 = rng.normal(size=(6, 3)) * 0.5, rng.normal(size=3) * 0.3
    km = keras.Sequential(
        [keras.Input((5,)), L.Dense(6, activation="relu", name="first"), L.Dense(3, name="second")], name="pair"
    )
    km.get_layer("first").set_weights([w1, b1])
    km.get_layer("second").set_weights([w2, b2])

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = torch.float64
            self.first, self.second = torch.nn.Linear(5, 6, dtype=d), torch.nn.Linear(6, 3, dtype=d)
            with torch.no_grad():
                for lin, (w, b) in ((self.first, (w1, b1)), (self.second, (w2, b2))):
                    lin.weight.copy_(torch.as_tensor(w.T))
                    lin.bias.copy_(torch.as_tensor(b))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(torch.relu(self.first(x)))

    return km, Net().double()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_config_same_shim(name: str) -> None:
    """Built and calibrated on the same data, the two shims import to graphs that compute the
    same values on fresh data and cost the same EBOPs; the shims' own EBOPs agree too."""
    cfg = CONFIGS[name]
    km, tm = _pair()
    rng = np.random.default_rng(1)
    x, fresh = rng.normal(size=(256, 5)) * 2, rng.normal(size=(512, 5)) * 2
    qk = hgqir.quantize_keras(km, config=cfg)
    gk = hgqir.from_keras(qk, calibration=x)
    xt = torch.as_tensor(x)
    qt = hgqir.quantize_torch(tm, xt, config=cfg)
    gt = hgqir.from_torch(qt, xt, calibration=xt)
    assert np.array_equal(gk.run(fresh), gt.run(fresh))
    assert hgqir.bops(gk).total == qk.ebops() and hgqir.bops(gt).total == float(qt.ebops())
    if name == "channel":
        # known difference (docs/keras.md): with channel granularity PyTorch gives a constant one
        # k, i per channel (the group's range), Keras the tightest type per weight: same values,
        # Keras' constants are never wider
        assert hgqir.bops(gk).total < hgqir.bops(gt).total
    else:
        assert hgqir.bops(gk).total == hgqir.bops(gt).total
    assert [op.kind for op in gk.ops] == [op.kind for op in gt.ops]


def test_keras_honours_places_and_overrides() -> None:
    km, _ = _pair()
    cfg = hgqir.ShimConfig(weight={"f": 3}, overrides={"sec*": {"weight": {"f": 5}, "bias": {"f": 2}}})
    q = hgqir.quantize_keras(km, config=cfg)
    assert np.all(np.asarray(q.get_layer("first").kq.f) == 3)
    assert np.all(np.asarray(q.get_layer("second").kq.f) == 5)
    assert np.all(np.asarray(q.get_layer("second").bq.f) == 2)
    assert np.all(np.asarray(q.get_layer("first").bq.f) == cfg.bias.f)


def test_old_keywords_are_config_fields() -> None:
    km, _ = _pair()
    old = hgqir.quantize_keras(km, f0=4, weight_f0=3, granularity="tensor", overflow="SAT", i0=1)
    new = hgqir.quantize_keras(
        km,
        config=hgqir.ShimConfig(
            input={"f": 4, "granularity": "tensor", "overflow": "SAT", "i": 1},
            activation={"f": 4, "granularity": "tensor", "overflow": "SAT", "i": 1},
            weight={"f": 3},
            bias={"f": 3},
        ),
    )
    for a, b in zip(old.trainable_variables, new.trainable_variables, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert (
        old.get_layer("first").iq.get_config()["overflow"]
        == "SAT"
        == new.get_layer("first").iq.get_config()["overflow"]
    )


def test_beta_argument_and_schedule() -> None:
    km, _ = _pair()
    sched = hgqir.frontends.shim_config.BetaSchedule(1e-6, 1e-4, epochs=2)
    q = hgqir.quantize_keras(km, beta=2e-5, config=hgqir.ShimConfig(beta=1.0))
    assert float(np.asarray(q.beta)) == 2e-5  # beta= wins over config.beta
    q = hgqir.quantize_keras(km, config=hgqir.ShimConfig(beta=3e-5))
    assert float(np.asarray(q.beta)) == 3e-5  # no beta= argument: the config's
    q = hgqir.quantize_keras(km, config=hgqir.ShimConfig(beta_schedule=sched))
    q.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(32, 5))
    hist = q.fit(x, np.zeros((32, 3)), epochs=3, verbose=0)
    assert hist.history["beta"] == [sched(0), sched(1), sched(2)]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"weight": {"overflow": "SAT"}}, "integer bits from the values"),
        ({"bit_l1": 1e-3}, "bit_l1"),
        ({"table_bits": 40}, "table_bits"),
        ({"overrides": {"nosuchlayer": {"weight": {"f": 2}}}}, "match no layer"),
    ],
)
def test_what_keras_cannot_honour_is_refused(options: dict, message: str) -> None:
    km, _ = _pair()
    with pytest.raises((ConfigError, hgqir.HgqirError), match=message):
        hgqir.quantize_keras(km, **options)


def test_lut_resource_weighs_the_cost_models_luts() -> None:
    """``resource="lut"``: both shims weigh beta times the calibrated LUTs per EBOP."""
    from hgqir.passes.netlist.cost import lut_per_ebop

    factor = lut_per_ebop()
    assert 0 < factor != 1.0
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).double()
    x0 = torch.randn(16, 4, dtype=torch.float64)
    plain = hgqir.quantize_torch(net, x0, config=hgqir.ShimConfig(beta=1e-3))
    lut = hgqir.quantize_torch(net, x0, config=hgqir.ShimConfig(beta=1e-3, resource="lut"))
    assert float(lut.regularization()) == pytest.approx(float(plain.regularization()) * factor, rel=1e-9)
    assert float(lut.ebops()) == pytest.approx(float(plain.ebops()), rel=1e-12)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Dense(2)])
    shim = hgqir.quantize_keras(model, config=hgqir.ShimConfig(beta=1e-3, resource="lut"))
    assert shim.resource_scale == factor and shim.get_config()["resource_scale"] == factor
    with pytest.raises(ValueError, match="resource"):
        hgqir.ShimConfig(resource="dsp")
