"""Keras DepthwiseConv1D/2D and SeparableConv1D/2D as the IR's depthwise ops (a separable
convolution: depthwise, a quantizer, the pointwise convolution): shim, import, EBOPs, plain
float import, the Vitis C++ of a MobileNet-style model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_testlib import L, check_shim, data, float64_scope

import hgqir
from hgqir.ir import OpKind


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _mobilenet_block(multiplier: int = 1) -> keras.Model:
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=multiplier, activation="relu")(h)
    h = L.SeparableConv2D(5, 3, padding="valid", depth_multiplier=2, activation="relu")(h)
    return keras.Model(inp, L.Dense(3)(L.Flatten()(h)))


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_and_separable_2d_are_exact(multiplier: int) -> None:
    _, g = check_shim(_mobilenet_block(multiplier), data((8, 8, 2), n=32))
    dws = g.ops_of(OpKind.DEPTHWISE_CONV2D)
    assert len(dws) == 2 and dws[0].operands[1].shape == (3, 3, 4 * multiplier)
    assert dws[1].operands[1].shape == (3, 3, 8 * multiplier)  # the separable layer's depthwise part


def test_depthwise_and_separable_1d_are_exact() -> None:
    inp = keras.Input((12, 3))
    h = L.DepthwiseConv1D(3, padding="same", use_bias=False)(inp)
    h = L.SeparableConv1D(4, 5, strides=2, activation="tanh")(h)
    _, g = check_shim(keras.Model(inp, h), data((12, 3)))
    assert len(g.ops_of(OpKind.DEPTHWISE_CONV1D)) == 2 and len(g.ops_of(OpKind.LUT)) == 1


def test_plain_import_follows_the_float_model() -> None:
    keras.utils.set_random_seed(3)
    model = _mobilenet_block(2)
    x = data((8, 8, 2), n=96, seed=4)
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=x[:64])
    assert len(g.ops_of(OpKind.DEPTHWISE_CONV2D)) == 2
    want = np.asarray(model.predict(x[64:], verbose=0))
    assert np.abs(g.run(x[64:]) - want).max() < 0.05


def test_dilated_depthwise_is_refused() -> None:
    inp = keras.Input((8, 8, 2))
    model = keras.Model(inp, L.DepthwiseConv2D(3, dilation_rate=2)(inp))
    with pytest.raises(hgqir.UnsupportedOpError, match="dilated"):
        hgqir.quantize_keras(model)


@pytest.mark.slow
def test_mobilenet_block_through_vitis(tmp_path: Path) -> None:
    qmodel, g = check_shim(_mobilenet_block(2), data((8, 8, 2), n=32))
    prj = hgqir.emit(g, "vitis", tmp_path / "prj").compile()
    xs = data((8, 8, 2), n=20, seed=9) * 4
    assert np.array_equal(prj.predict(xs), g.run(xs))


def test_trained_shim_stays_exact() -> None:
    keras.utils.set_random_seed(5)
    qmodel = hgqir.quantize_keras(_mobilenet_block(1), beta=1e-6)
    x = data((8, 8, 2), n=64, seed=6)
    y = np.abs(x).mean(axis=(1, 2))[:, :1].repeat(3, axis=1)
    qmodel.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    qmodel.fit(x, y, epochs=2, batch_size=16, verbose=0)
    g = hgqir.from_keras(qmodel, calibration=x)
    for xs in (x, 5 * x):
        assert np.array_equal(g.run(xs), np.asarray(qmodel.predict(xs, verbose=0)))
    assert qmodel.ebops() == hgqir.bops(g).total


def test_dilated_convolutions_are_exact() -> None:
    """Conv1D / Conv2D with dilation_rate: the convolution with the zero-stuffed kernel."""
    inp = keras.Input((12, 2))
    h = L.Conv1D(3, 3, dilation_rate=2, padding="causal")(inp)
    h = L.Conv1D(2, 2, dilation_rate=3, padding="same", activation="relu")(h)
    _, g = check_shim(keras.Model(inp, L.Flatten()(h)), data((12, 2)))
    assert [op.operands[1].shape[0] for op in g.ops_of(OpKind.CONV1D)] == [5, 4]
    img = keras.Input((9, 9, 2))
    model = keras.Model(img, L.Flatten()(L.Conv2D(2, 3, dilation_rate=(2, 1))(img)))
    check_shim(model, data((9, 9, 2)))
    x = data((9, 9, 2), n=80, seed=3)
    with pytest.warns(UserWarning):
        plain = hgqir.from_keras(model, calibration=x[:60])
    assert np.abs(plain.run(x[60:]) - np.asarray(model.predict(x[60:], verbose=0))).max() < 0.05
