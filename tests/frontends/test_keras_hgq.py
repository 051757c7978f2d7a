"""HGQ2 models import exactly: ``g.run(x) == model.predict(x)`` in float64, also 4x out of range."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from keras_testlib import L, assert_exact, data, float64_scope

import hgqir

H = pytest.importorskip("hgq.layers")


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _train_and_import(model: keras.Model, x: np.ndarray, ys: list[np.ndarray]) -> hgqir.Graph:
    """One short epoch so that bit widths and weights move, then HGQ2 calibration + import."""
    model.compile("adam", ["mse"] * len(ys))
    model.fit(x, ys if len(ys) > 1 else ys[0], epochs=1, batch_size=32, verbose=0)
    g = hgqir.from_keras(model, calibration=x)
    assert_exact(g, model, x)
    assert_exact(g, model, 4 * x)
    return g


def test_dense_merge_lut_softmax_model() -> None:
    inp = keras.Input((10,))
    q = H.Quantizer(name="qin")(inp)
    a = H.QDense(16, activation="relu")(q)
    b = H.QBatchNormDense(16)(q)
    c = H.QAdd()([a, b])
    d = H.QUnaryFunctionLUT("tanh")(c)
    e = H.QDense(8)(d)
    f = H.QSoftmax()(e)
    m = H.QMultiply()([a, b])
    s = H.QSubtract()([a, m])
    model = keras.Model(inp, [f, s])
    x = data((10,), n=128)
    g = _train_and_import(model, x, [np.zeros((128, 8)), np.zeros((128, 16))])
    kinds = {op.kind.value for op in g.ops}
    assert {"lut", "dense", "add", "mul", "sub", "global_maxpool"} <= kinds
    from hgqir.frontends.keras.importer.hgq import quant_spec

    assert g.inputs[0].type == quant_spec(model.get_layer("qin"), (10,)).type


def test_conv_pool_batchnorm_model_input_through_reshape() -> None:
    inp = keras.Input((36,))
    x = L.Reshape((6, 6, 1))(inp)
    x = H.QConv2D(4, 3, padding="same", activation="relu")(x)
    x = H.QBatchNormalization()(x)
    x = H.QMaxPooling2D(2)(x)
    x = H.QConv1D(2, 2)(L.Reshape((9, 4))(x))
    x = H.QAveragePooling1D(2)(x)
    x = H.QGlobalMaxPooling1D()(x)
    model = keras.Model(inp, x)
    g = _train_and_import(model, data((36,), n=64), [np.zeros((64, 2))])
    assert g.inputs[0].shape == (36,)


def test_input_feeding_two_quantizers_is_rejected_before_calibration() -> None:
    inp = keras.Input((4,))
    model = keras.Model(inp, H.QAdd()([H.QDense(2)(inp), H.QDense(2)(inp)]))
    with pytest.raises(hgqir.UnsupportedOpError, match="put a quantizer layer right after the input"):
        hgqir.from_keras(model, calibration=data((4,)))


def test_float_activation_in_hgq_layer_is_unsupported() -> None:
    inp = keras.Input((4,))
    model = keras.Model(inp, H.QDense(2, activation="tanh", name="qd")(inp))
    with pytest.raises(hgqir.UnsupportedOpError, match=r"qd \(QDense\).*QUnaryFunctionLUT"):
        hgqir.from_keras(model)
