"""Keras smooth activations as exact tables (``lut``): alone, fused, and in plain float import."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hgqir.frontends.activations import SMOOTH_NUMPY
from hgqir.frontends.keras.support import KERAS_SMOOTH
from keras_testlib import L, check_shim, data, float64_scope, single

import hgqir
from hgqir.ir import OpKind


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


@pytest.mark.parametrize(
    "act", ["elu", "selu", "swish", "gelu", "softplus", "mish", "hard_swish", "hard_sigmoid", "relu6", "hard_tanh"]
)
def test_activation_layer_is_exact(act: str) -> None:
    model = single(L.Activation(act), (5,), lambda x: L.Dense(5)(x))
    _, g = check_shim(model, data((5,)))
    assert [op.kind for op in g.ops].count(OpKind.LUT) == 1


def test_fused_activations_in_a_small_model_are_exact() -> None:
    inp = keras.Input((6,))
    h = L.Dense(8, activation="elu")(inp)
    h = L.Dense(6, activation="gelu")(h)
    model = keras.Model(inp, L.Dense(2)(L.Activation("silu")(h)))
    _, g = check_shim(model, data((6,)))
    assert [op.kind for op in g.ops].count(OpKind.LUT) == 3


@pytest.mark.parametrize("name", sorted(KERAS_SMOOTH))
def test_table_reference_matches_keras(name: str) -> None:
    xs = np.linspace(-12.0, 12.0, 2001)
    fn = keras.activations.get(name)
    want = np.asarray(fn(keras.ops.convert_to_tensor(xs, dtype="float64")))
    # same definition (TensorFlow's float64 erf is good to ~1e-8 only; tables use math.erf)
    np.testing.assert_allclose(SMOOTH_NUMPY[KERAS_SMOOTH[name]](xs), want, rtol=0, atol=1e-8)


def test_plain_import_follows_the_float_model() -> None:
    keras.utils.set_random_seed(2)
    inp = keras.Input((4,))
    h = L.Dense(8, activation="elu")(inp)
    model = keras.Model(inp, L.Dense(2)(L.Activation("mish")(h)))
    x = data((4,), n=256, seed=3)
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=x[:200])
    want = np.asarray(model.predict(x[200:], verbose=0))
    assert np.abs(g.run(x[200:]) - want).max() < 0.1
