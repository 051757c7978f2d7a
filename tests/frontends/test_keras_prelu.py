"""Keras LeakyReLU / PReLU / ReLU(negative_slope) / leaky_relu as the exact ``prelu`` op, the ELU
layer as a table, and log_softmax as the table softmax with ``log``: shim (with training),
import, interpreter, plain float import."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import pytest
from keras_testlib import L, assert_exact, check_shim, data, float64_scope, single

import hgqir
from hgqir.ir import OpKind


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _kinds(g: hgqir.Graph) -> list[OpKind]:
    return [op.kind for op in g.ops]


LAYERS: dict[str, Any] = {
    "leaky_default": lambda: L.LeakyReLU(),
    "leaky_0.1": lambda: L.LeakyReLU(negative_slope=0.1),
    "relu_negative_slope": lambda: L.ReLU(negative_slope=0.25),
    "activation_leaky_relu": lambda: L.Activation("leaky_relu"),
    "prelu_per_element": lambda: L.PReLU(alpha_initializer=keras.initializers.Constant(0.2)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_prelu_layers_are_exact(name: str) -> None:
    model = single(LAYERS[name](), (5,), lambda x: L.Dense(5)(x))
    _, g = check_shim(model, data((5,)))
    assert _kinds(g).count(OpKind.PRELU) == 1


def test_prelu_shared_axes_in_a_convnet_and_fused_leaky_relu() -> None:
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 3, padding="same")(inp)
    h = L.PReLU(alpha_initializer=keras.initializers.Constant(0.3), shared_axes=[1, 2])(h)
    h = L.Flatten()(L.MaxPooling2D()(h))
    model = keras.Model(inp, L.Dense(2, activation="leaky_relu")(h))
    _, g = check_shim(model, data((6, 6, 2)))
    prelus = [op for op in g.ops if op.kind is OpKind.PRELU]
    assert len(prelus) == 2 and prelus[0].operands[1].shape == (1, 1, 3)


def test_prelu_slopes_train() -> None:
    keras.utils.set_random_seed(4)
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(1)(L.PReLU()(L.Dense(6)(inp))))
    qmodel = hgqir.quantize_keras(model, beta=1e-6)
    x = data((4,), n=256, seed=5)
    y = np.abs(x).sum(axis=1, keepdims=True)
    layer = qmodel.get_layer(model.layers[2].name)
    before = np.asarray(layer.alpha).copy()
    qmodel.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    qmodel.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert not np.array_equal(before, np.asarray(layer.alpha))
    g = hgqir.from_keras(qmodel, calibration=x)
    assert_exact(g, qmodel, x)
    assert_exact(g, qmodel, 6 * x)
    assert qmodel.ebops() == hgqir.bops(g).total


def test_elu_layer_and_log_softmax_are_tables() -> None:
    inp = keras.Input((6,))
    h = L.ELU()(L.Dense(8)(inp))
    out1 = L.Activation("log_softmax")(L.Dense(4)(h))
    out2 = L.Dense(3, activation="log_softmax")(h)
    model = keras.Model(inp, [out1, out2])
    _, g = check_shim(model, data((6,)))
    softmaxes = [op for op in g.ops if op.kind is OpKind.SOFTMAX]
    assert len(softmaxes) == 2 and all(op.attrs["log"] for op in softmaxes)
    assert _kinds(g).count(OpKind.LUT) == 1
    out = g.run(data((6,)))[0]
    assert (out <= 0).all() and np.abs(np.logaddexp.reduce(out, axis=1)).max() < 0.25


def test_elu_with_another_alpha_is_refused() -> None:
    with pytest.raises(hgqir.UnsupportedOpError, match="alpha=0.5"):
        hgqir.quantize_keras(single(L.ELU(alpha=0.5), (3,)))


def test_plain_import_follows_the_float_model() -> None:
    keras.utils.set_random_seed(2)
    inp = keras.Input((4,))
    h = L.LeakyReLU(negative_slope=0.1)(L.Dense(8)(inp))
    h = L.PReLU(alpha_initializer=keras.initializers.Constant(0.25))(L.Dense(8)(h))
    h = L.ELU()(L.Dense(6, activation="leaky_relu")(h))
    model = keras.Model(inp, L.Activation("log_softmax")(L.Dense(3)(h)))
    x = data((4,), n=300, seed=3)
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=x[:200])
    assert _kinds(g).count(OpKind.PRELU) == 3
    want = np.asarray(model.predict(x[200:], verbose=0))
    assert np.abs(g.run(x[200:]) - want).max() < 0.1
