"""One trainable bit-width variable per shim layer (ParamBank): views, gradients, saved files."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from hgqir.frontends.keras.fast.bank import BankSlice, ParamBank, pool_banks, split_bank
from hgqir.frontends.keras.shim.layers import QDense
from hgqir.frontends.keras.shim.qmath import exp2_bits, train_round
from hgqir.frontends.keras.shim.quant import Quantizer, WeightQuantizer
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


def test_the_shim_has_one_trainable_bit_variable() -> None:
    """Every layer's bank is a stretch of one model variable: one variable more than the float model."""
    qmodel = hgqir.quantize_keras(_model())
    banks = [layer for layer in qmodel._flatten_layers() if isinstance(layer, ParamBank)]
    assert len(banks) == 6  # conv, batchnorm, add, two dense, the output quantizer
    float_vars = sum(len(layer.trainable_weights) for layer in _model().layers)
    standalone = [layer for layer in qmodel.layers if isinstance(layer, Quantizer)]  # an unhoisted model input
    assert not standalone and "dense_out_q" in [layer.name for layer in qmodel.layers]  # output: banked
    assert len(qmodel.trainable_variables) == float_vars + 1
    assert not [b for b in banks if b.trainable_weights]
    for layer in qmodel._flatten_layers():
        if isinstance(layer, (Quantizer, WeightQuantizer)) and layer not in standalone:
            assert isinstance(layer.f, BankSlice) and layer.f.bank is qmodel.fbank
            assert not [v for v in layer.trainable_weights if v.name == "f"]
    dense = qmodel.get_layer("dense")
    sizes = [int(np.prod(q.f_shape)) for q in (dense.iq, dense.kq, dense.bq)]
    assert isinstance(dense.fbank.f, BankSlice) and dense.fbank.f.shape == (sum(sizes),)
    cfg = hgqir.ShimConfig()  # initial bits: activation, weight and bias places of the config
    starts = [np.full(n, f) for n, f in zip(sizes, (cfg.activation.f, cfg.weight.f, cfg.bias.f), strict=True)]
    assert np.array_equal(np.asarray(dense.fbank.f), np.concatenate(starts))
    assert qmodel.fbank.shape == (sum(b.size for b in banks),)


def test_pooled_bank_keeps_each_quantizers_range() -> None:
    """The pooled variable's constraint clips every stretch to its own quantizer's f_range."""
    narrow, wide = QDense(3, kq={"f_range": (-2.0, 5.0)}), QDense(2)
    narrow.build((None, 2))
    wide.build((None, 3))
    narrow.kq.f.assign(np.arange(6.0).reshape(2, 3))
    owner = keras.layers.Layer()
    var = pool_banks(owner, [narrow.fbank, wide.fbank])
    assert owner.trainable_weights == [var] and not narrow.fbank.trainable_weights
    assert np.array_equal(np.asarray(narrow.kq.f), np.arange(6.0).reshape(2, 3))  # values carried over
    var.assign(np.full(var.shape, 9.0))
    var.assign(var.constraint(var))
    assert np.array_equal(np.asarray(narrow.kq.f), np.full((2, 3), 5.0))
    assert np.array_equal(np.asarray(narrow.iq.f), np.full(2, 9.0))
    assert np.array_equal(np.asarray(wide.kq.f), np.full((3, 2), 9.0))


def test_a_fit_step_trains_the_pooled_bank() -> None:
    qmodel = hgqir.quantize_keras(_model(), beta=1e-4)
    qmodel.compile(keras.optimizers.SGD(1e-2), "mse")
    before = np.asarray(qmodel.fbank).copy()
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 1))
    qmodel.fit(x, np.zeros((16, 2)), epochs=1, batch_size=16, verbose=0)
    after = np.asarray(qmodel.fbank)
    assert not np.array_equal(after, before)
    dense = next(layer for layer in qmodel.layers if isinstance(layer, QDense))
    start = dense.fbank.f.offset + int(np.prod(dense.iq.f_shape))
    kf = np.asarray(dense.kq.f)
    assert np.array_equal(kf.ravel(), after[start : start + kf.size])


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


def test_saved_file_keeps_one_stretch_per_layer_bank(tmp_path: Path) -> None:
    """The pooled variable is not saved itself: each layer's bank saves its stretch (the file layout
    of per-layer banks), and a reload puts every stretch back into the new model's pooled variable."""
    h5py = pytest.importorskip("h5py")
    qmodel = hgqir.quantize_keras(_model())
    values = np.random.default_rng(1).uniform(-2.0, 8.0, qmodel.fbank.shape)
    qmodel.fbank.assign(values)
    path = tmp_path / "shim.keras"
    qmodel.save(path)
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
        stored: list[str] = []
        h5.visititems(lambda name, obj: stored.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert (
        len([n for n in stored if "fbank" in n]) == 6
    )  # one per bank: conv, batchnorm, add, two dense, the output quantizer
    assert len([n for n in stored if n.startswith("vars/")]) == 1  # the model's own: beta only
    again = keras.saving.load_model(path, compile=False)
    assert np.array_equal(np.asarray(again.fbank), values)
    dense = next(layer for layer in again.layers if isinstance(layer, QDense))
    assert np.array_equal(
        np.asarray(dense.fbank.f), values[dense.fbank.f.offset : dense.fbank.f.offset + dense.fbank.size]
    )


def test_exp2_bits_is_exact_and_train_round_passes_gradients() -> None:
    for dtype, lim in (("float32", 126), ("float64", 1022)):
        for n in (8, 600):  # pow below 512 elements, exponent bits above
            e = np.resize(np.arange(-lim, lim + 1), n).astype(dtype)
            got = keras.ops.convert_to_numpy(exp2_bits(keras.ops.convert_to_tensor(e, dtype)))
            assert got.dtype == dtype and np.array_equal(got, np.exp2(e))
    v = tf.Variable([-1.5, -0.5, 0.49, 0.5, 2.5])
    with tf.GradientTape() as tape:
        r = train_round(tf.convert_to_tensor(v))
        loss = tf.reduce_sum(r * tf.constant([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert np.array_equal(r.numpy(), [-1.0, 0.0, 0.0, 1.0, 3.0])
    assert np.array_equal(tape.gradient(loss, v).numpy(), [1.0, 2.0, 3.0, 4.0, 5.0])


def test_the_shim_works_without_fast_and_trains_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fast part every quantizer keeps its own ``f``; one fit step from the same
    start gives the same bits, weights and imported graph as with the pooled bank."""
    from hgqir.frontends.keras.shim import accel

    x = np.random.default_rng(0).normal(size=(64, 6, 6, 1))
    y = np.random.default_rng(1).normal(size=(64, 2))

    def step() -> tuple[keras.Model, list[np.ndarray]]:
        keras.utils.set_random_seed(0)
        qmodel = hgqir.quantize_keras(_model())
        qmodel.compile(keras.optimizers.SGD(0.01), "mse")
        qmodel.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
        bits = [np.asarray(q.f) for q in qmodel._flatten_layers() if isinstance(q, (Quantizer, WeightQuantizer))]
        return qmodel, bits

    banked, bits = step()
    monkeypatch.setattr(accel, "_BANKING", [])
    plain, own = step()
    assert banked.fbank is not None and plain.fbank is None
    assert not any(isinstance(layer, ParamBank) for layer in plain._flatten_layers())
    assert len(own) == len(bits) and all(np.array_equal(a, b) for a, b in zip(own, bits, strict=True))
    g_plain, g_banked = (hgqir.from_keras(m, calibration=x) for m in (plain, banked))
    assert np.array_equal(g_plain.run(4 * x), g_banked.run(4 * x))
    assert hgqir.bops(g_plain).total == hgqir.bops(g_banked).total
    assert [v.type for v in g_plain.inputs] == [v.type for v in g_banked.inputs]
