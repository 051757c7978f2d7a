"""One trainable bit-width variable per shim layer (ParamBank): views, gradients, saved files."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hgqir.frontends.keras_bank import BankSlice, ParamBank, split_bank
from hgqir.frontends.keras_layers import QDense
from hgqir.frontends.keras_quant import Quantizer, WeightQuantizer
from keras_testlib import L, float64_scope

import hgqir

tf = pytest.importorskip("tensorflow")


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _model() -> keras.Model:
    inp = keras.Input((6, 6, 1))
    a = L.Conv2D(3, 3, activation="relu")(inp)
    b = L.BatchNormalization()(a)
    c = L.Flatten()(L.Add()([a, b]))
    return keras.Model(inp, L.Dense(2)(L.Dense(4, activation="relu")(c)))


def test_every_shim_layer_has_one_trainable_bit_variable() -> None:
    qmodel = hgqir.quantize_keras(_model())
    banks = [layer for layer in qmodel._flatten_layers() if isinstance(layer, ParamBank)]
    assert len(banks) == 5  # conv, batchnorm, add, two dense
    float_vars = sum(len(layer.trainable_weights) for layer in _model().layers)
    assert len(qmodel.trainable_variables) == float_vars + len(banks)
    for layer in qmodel._flatten_layers():
        if isinstance(layer, (Quantizer, WeightQuantizer)):
            assert isinstance(layer.f, BankSlice)
            assert not [v for v in layer.trainable_weights if v.name == "f"]
    dense = qmodel.get_layer("dense")
    sizes = [int(np.prod(q.f_shape)) for q in (dense.iq, dense.kq, dense.bq)]
    assert dense.fbank.f.shape == (sum(sizes),)
    assert np.array_equal(np.asarray(dense.fbank.f), np.full(sum(sizes), 6.0))


def test_views_read_and_assign_only_their_stretch() -> None:
    layer = QDense(3, kq={"f0": 4.0}, bq={"f0": 2.0})
    layer.build((None, 2))
    assert np.array_equal(np.asarray(layer.kq.f), np.full((2, 3), 4.0))
    layer.kq.f.assign(np.arange(6.0).reshape(2, 3))
    layer.bq.f.assign(7.5)  # broadcast, like a variable
    bank = np.asarray(layer.fbank.f)
    assert np.array_equal(bank, np.concatenate([[6.0, 6.0], np.arange(6.0), [7.5] * 3]))
    assert np.array_equal(np.array(layer.kq.f), np.arange(6.0).reshape(2, 3))
    assert layer.kq.f.shape == (2, 3) and layer.iq.f.shape == (2,)


def test_split_gradient_is_the_concatenated_piece_gradients() -> None:
    bank = tf.Variable(np.arange(11.0))
    shapes = [(2,), (3, 2), (), (2,)]
    weights = [tf.constant(np.random.default_rng(n).normal(size=s)) for n, s in enumerate(shapes)]
    with tf.GradientTape() as tape:
        parts = split_bank(tf.convert_to_tensor(bank), shapes)
        loss = sum(tf.reduce_sum(w * p * p) for w, p in zip(weights, parts, strict=True))
    got = tape.gradient(loss, bank).numpy()
    assert [tuple(p.shape) for p in parts] == shapes
    want = np.concatenate([np.ravel(2 * w.numpy() * p.numpy()) for w, p in zip(weights, parts, strict=True)])
    assert np.array_equal(got, want)


def test_quantizers_load_files_saved_before_banks() -> None:
    """Old files hold f in each quantizer (f, then i, k); a banked quantizer takes them."""
    layer = QDense(3)
    layer.build((None, 2))
    f, i, k = np.array([3.0, 4.0]), np.array([1.0, 2.0]), np.array([0.0, 1.0])
    layer.iq.load_own_variables({"0": f, "1": i, "2": k})
    layer.kq.load_own_variables({"0": np.full((2, 3), 5.0)})
    layer.fbank.load_own_variables({})  # an old file has nothing for the bank
    assert np.array_equal(np.asarray(layer.iq.f), f) and np.array_equal(np.asarray(layer.iq.i), i)
    assert np.array_equal(np.asarray(layer.iq.k), k)
    assert np.array_equal(np.asarray(layer.kq.f), np.full((2, 3), 5.0))
    assert np.array_equal(np.asarray(layer.bq.f), np.full(3, 6.0))
    with pytest.raises(ValueError):  # anything else is still an error
        layer.iq.load_own_variables({"0": f})
