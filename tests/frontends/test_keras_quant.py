"""The shim's quantizers against the reference :func:`hgqir.quantize`, eager and inside tf.function."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hgqir.frontends.keras.shim.qmath import quantize_exact
from hgqir.frontends.keras.shim.quant import Quantizer, WeightQuantizer
from keras_testlib import float64_scope

import hgqir
from hgqir.fixed import OverflowMode, RoundMode

tf = pytest.importorskip("tensorflow")


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _inputs(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    x = rng.normal(scale=6.0, size=(n, 6))
    ties = np.round(rng.normal(scale=40, size=(n, 6))) / 8 + 1 / 16  # exact half-LSB ties at f = 3
    return np.where(rng.random((n, 6)) < 0.3, ties, x)


@pytest.mark.parametrize("rnd", [m.value for m in RoundMode])
@pytest.mark.parametrize("ovf", [m.value for m in OverflowMode])
def test_quantize_exact_matches_reference(rnd: str, ovf: str) -> None:
    rng = np.random.default_rng(abs(hash((rnd, ovf))) % 2**32)
    x = _inputs(rng)
    k = rng.integers(0, 2, 6).astype(float)
    i = rng.integers(-2, 5, 6).astype(float)
    f = rng.integers(-1, 6, 6).astype(float)
    f[0] = -i[0] - k[0]  # one pruned element
    want = hgqir.quantize(x, k, i, f, round=rnd, overflow=ovf)
    got = np.asarray(quantize_exact(keras.ops.convert_to_tensor(x), k, i, f, RoundMode(rnd), OverflowMode(ovf)))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("ovf", ["WRAP", "SAT", "SAT_SYM"])
def test_quantizer_layer_in_graph_mode_uses_exact_integers(ovf: str) -> None:
    """Non-integer parameters (as training leaves them) must round exactly in compiled graphs too."""
    q = Quantizer(overflow=ovf, round="RND")
    q.build((None, 8))
    rng = np.random.default_rng(7)
    q.i.assign(np.array([1.8399422353335833, 1.83895193, 2.49, 0.51, -0.49, 3.2, 1.5, 2.0]))
    q.f.assign(np.array([5.839712068864151, 5.5, 3.49, 2.51, 6.0, 4.49999, 0.5, 7.3]))
    q.k.assign(np.array([1, 1, 0, 1, 0, 1, 1, 0], dtype=float))
    x = rng.normal(scale=8.0, size=(300, 8))
    k, i, f = q.kif_numpy()
    want = hgqir.quantize(x, k, i, f, round="RND", overflow=ovf)
    graph = tf.function(lambda t: q(t, training=False))
    assert np.array_equal(np.asarray(q(x, training=False)), want)
    assert np.array_equal(graph(tf.constant(x)).numpy(), want)


def test_weight_quantizer_types_are_tight_and_hold_the_values() -> None:
    wq = WeightQuantizer(round="RND")
    w = np.random.default_rng(3).normal(scale=2.0, size=(5, 4))
    wq.build(w.shape)
    wq.f.assign(np.full(w.shape, 3.7))
    values, t = wq.quantized_numpy(w)
    assert np.array_equal(values, hgqir.quantize(w, 1, 20, 4, round="RND"))
    bits = np.asarray(wq.bits(keras.ops.convert_to_tensor(values)))
    assert np.array_equal(bits, t.bits)
    # tight: one integer bit less would not hold the value
    narrower = hgqir.FixedType(t.shape, t.k, t.i - 1, t.f)
    live = ~t.zero_mask
    assert np.all((values < narrower.lo) | (values > narrower.hi) | ~live)


def test_training_forward_and_gradients() -> None:
    q = Quantizer(overflow="SAT", round="RND", granularity="tensor", i0=1.0, f0=2.0)
    q.build((None, 3))
    x = tf.constant([[0.3, 5.0, -0.7]], dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = q(x, training=True)
        loss = tf.reduce_sum(y)
    gx, gi, gf = tape.gradient(loss, [x, q.i.value, q.f.value])
    assert np.array_equal(y.numpy(), [[0.25, 1.75, -0.75]])
    assert np.array_equal(gx.numpy(), [[1.0, 0.0, 1.0]])  # straight through inside, clipped outside
    ln2 = np.log(2.0)
    # d/df: -ln2 (xq - x) inside; d hi / d f = ln2 2**-f for the clipped element
    want_f = -ln2 * ((0.25 - 0.3) + (-0.75 + 0.7)) + ln2 * 2.0**-2
    assert gf.numpy() == pytest.approx(want_f)
    assert gi.numpy() == pytest.approx(ln2 * 2.0)  # d hi / d i = ln2 2**i


@pytest.mark.parametrize("ovf", ["WRAP", "SAT"])
def test_training_call_returns_the_widths_it_quantized_with(ovf: str) -> None:
    """``bits=True``: same output, plus max(k + i + f, 0) from before the WRAP range update, gradient 1 where > 0."""
    q = Quantizer(overflow=ovf, round="RND")
    q.build((None, 4))
    q.i.assign(np.array([1.2, -3.0, 2.6, 0.4]))
    q.f.assign(np.array([3.4, 1.0, -0.6, 2.5]))  # element 1: width 1 - 3 + 1 = -1, pruned
    x = tf.constant(np.random.default_rng(5).normal(scale=3.0, size=(50, 4)))
    want_bits = np.asarray(q.bits())
    i_before = q.i.numpy().copy()
    with tf.GradientTape() as tape:
        y, bits = q(x, training=True, bits=True)
        loss = tf.reduce_sum(bits * tf.constant([1.0, 2.0, 3.0, 4.0], dtype="float64"))
    gi, gf = tape.gradient(loss, [q.i.value, q.f.value])
    assert np.array_equal(bits.numpy(), want_bits)
    assert np.array_equal(want_bits, [5.0, 0.0, 3.0, 4.0])
    q.i.assign(i_before)
    assert np.array_equal(y.numpy(), q(x, training=True).numpy())
    assert np.array_equal(gf.numpy(), [1.0, 0.0, 3.0, 4.0])
    if ovf == "SAT":
        assert np.array_equal(gi.numpy(), [1.0, 0.0, 3.0, 4.0])
