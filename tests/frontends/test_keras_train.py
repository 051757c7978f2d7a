"""Training the shim with ordinary compile / fit: bit widths move, beta lowers EBOPs, calibration."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hgqir.frontends.keras import BetaScheduler
from hgqir.frontends.keras.shim.quant import Quantizer, WeightQuantizer
from keras_testlib import L, assert_exact, data, float64_scope

import hgqir

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _task(n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    x = data((8,), n=n, seed=5)
    y = (x[:, :4] * 2 + np.sin(x[:, 4:])).astype(np.float64)
    return x, y


def _model() -> keras.Model:
    return keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(4)])


def _bits(qmodel: keras.Model) -> dict[str, np.ndarray]:
    """Every quantizer's parameters (fractional bits may live in the owning layer's packed variable)."""
    found = {}
    for layer in qmodel._flatten_layers():
        if isinstance(layer, (Quantizer, WeightQuantizer)):
            found[f"{layer.name}/f"] = np.array(layer.f)
            if isinstance(layer, Quantizer):
                found[f"{layer.name}/i"] = np.array(layer.i)
    return found


def _fit(
    beta: float, epochs: int = 1, lr: float = 0.01, **options: object
) -> tuple[keras.Model, keras.callbacks.History]:
    keras.utils.set_random_seed(0)
    qmodel = hgqir.quantize_keras(_model(), beta=beta, **options)
    qmodel.compile(keras.optimizers.Adam(lr), "mse")
    x, y = _task()
    history = qmodel.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return qmodel, history


def test_one_epoch_moves_bit_widths_and_shows_ebops() -> None:
    keras.utils.set_random_seed(0)
    qmodel = hgqir.quantize_keras(_model(), beta=1e-4)
    before = _bits(qmodel)
    qmodel.compile(keras.optimizers.Adam(0.01), "mse")
    x, y = _task()
    history = qmodel.fit(x, y, epochs=1, batch_size=32, verbose=0)
    after = _bits(qmodel)
    moved = [k for k in before if k.endswith("/f") and not np.array_equal(before[k], after[k])]
    assert len(moved) >= 4, moved
    assert any(k.endswith("/i") and not np.array_equal(before[k], after[k]) for k in before)  # WRAP tracking
    assert history.history["ebops"][-1] > 0
    assert history.history["loss"][-1] > 0


def test_larger_beta_gives_clearly_lower_ebops() -> None:
    # Adam moves a bit width by about lr per step: 48 steps of 0.05 let widths change by ~2 bits
    low, _ = _fit(0.0, epochs=3, lr=0.05)
    high, _ = _fit(3e-3, epochs=3, lr=0.05)
    assert high.ebops() < 0.6 * low.ebops()


def test_beta_scheduler_sets_beta_each_epoch() -> None:
    keras.utils.set_random_seed(0)
    qmodel = hgqir.quantize_keras(_model())
    qmodel.compile(keras.optimizers.Adam(0.01), "mse")
    x, y = _task(128)
    history = qmodel.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[BetaScheduler(lambda e: 1e-3 * (e + 1))])
    assert history.history["beta"] == [1e-3, 2e-3]
    assert float(np.array(qmodel.beta)) == pytest.approx(2e-3)


def test_trained_shim_is_exact_after_calibration() -> None:
    qmodel, _ = _fit(1e-4, overflow="SAT_SYM")
    x, _ = _task()
    g = hgqir.from_keras(qmodel, calibration=x)
    assert_exact(g, qmodel, x)
    assert_exact(g, qmodel, 4 * x)
    assert qmodel.ebops() == hgqir.bops(g).total


def test_calibration_covers_the_data_and_sets_sign_bits() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), L.Dense(3, activation="relu"), L.Dense(2)])
    qmodel = hgqir.quantize_keras(model)
    x = 3 * data((3,), n=256)
    g = hgqir.from_keras(qmodel, calibration=x)
    q = [layer for layer in qmodel.layers if hasattr(layer, "kq")][-1].iq  # after the relu: never negative
    assert np.all(np.array(q.k) == 0)
    first = g.inputs[0].type
    assert np.all(first.lo <= x.min(axis=0)) and np.all(first.hi >= x.max(axis=0) - 2.0**-first.f)
    # calibration data never wraps: the shim equals the unwrapped rounding on it
    xr = hgqir.quantize(x, first.k, 64, first.f, round="RND")
    assert np.array_equal(hgqir.quantize(x, first.k, first.i, first.f, round="RND", overflow="WRAP"), xr)


def test_calibration_prunes_elements_that_stay_zero() -> None:
    """An input that rounds to 0 on all calibration data gets width 0 (not ``f`` bits of zeros)."""
    keras.utils.set_random_seed(0)
    qmodel = hgqir.quantize_keras(keras.Sequential([keras.Input((4,)), L.Dense(3)]), input={"f": 6})
    x = data((4,))
    x[:, 1] = 0.0
    x[:, 3] = np.random.default_rng(1).uniform(-(2.0**-8), 2.0**-8, len(x))  # rounds to 0 at f = 6
    g = hgqir.from_keras(qmodel, calibration=x)
    width = g.inputs[0].type.width
    assert np.all(width[[1, 3]] <= 0) and np.all(width[[0, 2]] > 0)
    assert np.all(np.asarray([layer for layer in qmodel.layers if hasattr(layer, "kq")][-1].iq.bits())[[1, 3]] == 0)
    assert qmodel.ebops() == hgqir.bops(g).total
    assert_exact(g, qmodel, 4 * x)


def test_pruned_elements_are_exactly_zero() -> None:
    keras.utils.set_random_seed(0)
    qmodel = hgqir.quantize_keras(keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    q = [layer for layer in qmodel.layers if hasattr(layer, "kq")][-1].iq
    q.f.assign(np.array([-20.0, 4, 4, -20.0]))
    x = data((4,))
    g = hgqir.from_keras(qmodel, calibration=x)
    assert np.all(g.inputs[0].type.width[[0, 3]] <= 0)
    assert np.array_equal(np.asarray(q(x, training=False))[:, [0, 3]], np.zeros((len(x), 2)))
    assert np.array_equal(np.asarray(q(x, training=True))[:, [0, 3]], np.zeros((len(x), 2)))
    assert_exact(g, qmodel, x)


def test_running_integer_bits_hold_the_training_batch() -> None:
    """After a training step a WRAP quantizer does not wrap that batch, powers of two included."""
    q = Quantizer(i0=-4.0, f0=3.0)
    q.build((None, 3))
    x = np.array([[1.0, -2.0, 0.999], [0.5, 3.9, -0.0625]])
    q(x, training=True)
    k, i, f = q.kif_numpy()
    unwrapped = hgqir.quantize(x, k, 64, f, round="RND")
    assert np.array_equal(np.asarray(q(x, training=False)), unwrapped)
