"""Plain float Keras models import straight to IR: no training shim, types calibrated exactly."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hgqir.frontends.keras.importer.plain import PlainImportWarning
from keras_testlib import L, data, float64_scope

import hgqir


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 2))
    a = L.Conv2D(4, 3, activation="relu", padding="same")(inp)
    b = L.BatchNormalization()(a)
    c = L.Add()([a, b])
    d = L.AveragePooling2D(2)(c)
    e = L.Dense(6, activation="tanh")(L.Flatten()(d))
    return keras.Model(inp, L.Dense(3, activation="softmax")(e))


def _import(model: keras.Model, x: np.ndarray) -> hgqir.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlainImportWarning)
        return hgqir.from_keras(model, calibration=x)


def test_no_shim_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from hgqir.frontends.keras.shim import build

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plain import built a training shim")

    monkeypatch.setattr(build, "quantize_keras", refuse)
    monkeypatch.setattr(hgqir.frontends.keras, "quantize_keras", refuse)
    g = _import(_model(), data((8, 8, 2), n=128))
    kinds = {op.kind.value for op in g.ops}
    assert {"conv2d", "batchnorm", "add", "avgpool2d", "dense", "lut", "softmax", "quant"} <= kinds


def test_calibration_data_never_wraps_and_follows_the_float_model() -> None:
    model = _model()
    x = data((8, 8, 2), n=256)
    g = _import(model, x)
    y = g.run(x)
    # every quantizer holds every value it meets on the calibration data: saturating instead of
    # wrapping changes nothing
    sat = hgqir.loads(hgqir.dumps(g))
    for op in sat.ops:
        if op.kind in (hgqir.OpKind.QUANT, hgqir.OpKind.INPUT):
            op.attrs["overflow"] = hgqir.OverflowMode.SAT
    assert np.array_equal(sat.run(x), y)
    assert np.max(np.abs(y - np.asarray(model.predict(x, verbose=0)))) < 0.02
    assert np.allclose(y.sum(axis=-1), 1.0, atol=0.02)  # softmax tables


def test_types_are_per_element_and_warn() -> None:
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    x = data((4,), n=128) * np.array([0.1, 1.0, 8.0, 0.0])
    with pytest.warns(PlainImportWarning, match="integer bits from the range of 128 calibration samples"):
        g = hgqir.from_keras(model, calibration=x)
    t = g.inputs[0].type
    assert t.width[3] <= 0  # always zero: pruned
    assert t.i[0] < t.i[1] < t.i[2]


def test_new_data_never_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh data and inputs up to 5 % above the calibration maximum agree with the float model
    within the quantization error: the guard bit (hgqir.frontends.calibration). Without it
    (margin 0) the same inputs wrap."""
    from hgqir.frontends.keras.importer import plain

    a, b = keras.Input((32,)), keras.Input((32,))
    model = keras.Model([a, b], L.Add()([a, b]))
    rng = np.random.default_rng(0)
    cal = [rng.uniform(0, 1, (2000, 32)) for _ in range(2)]
    fresh = [rng.uniform(0, 1, (2400, 32)) for _ in range(2)]
    beyond = [c.max(axis=0) * (1 + 0.05 * rng.uniform(0, 1, (2400, 32))) for c in cal]
    g = _import(model, cal)
    f_in, f_out = int(g.inputs[0].type.f.min()), int(g.outputs[0].type.f.min())
    bound = 2 * 2.0 ** -(f_in + 1) + 2.0 ** -(f_out + 1)  # two inputs and the output rounded to nearest
    for xs in (fresh, beyond):
        assert np.abs(g.run(*xs) - (xs[0] + xs[1])).max() <= bound
    monkeypatch.setattr(plain, "POLICY", plain.CalibrationPolicy(margin_bits=0))
    exact = _import(model, cal)
    assert np.abs(exact.run(*beyond) - (beyond[0] + beyond[1])).max() > 0.5  # wrapped


def _wraps(g: hgqir.Graph, xs: list[np.ndarray]) -> bool:
    """Whether any WRAP quantizer or input of ``g`` wraps on ``xs`` (saturating changes the result)."""
    sat = hgqir.loads(hgqir.dumps(g))
    for op in sat.ops:
        if op.kind in (hgqir.OpKind.QUANT, hgqir.OpKind.INPUT) and op.attrs["overflow"] is hgqir.OverflowMode.WRAP:
            op.attrs["overflow"] = hgqir.OverflowMode.SAT
    return not np.array_equal(sat.run(*xs), g.run(*xs))


def test_shim_calibration_keeps_a_guard_bit() -> None:
    """A trained shim's WRAP quantizers calibrate with one guard integer bit too: inputs 5 % above
    the calibration maximum never wrap; with ``margin_bits=0`` they do."""
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((16,)), L.Dense(12, activation="relu"), L.Dense(4)])
    cal = rng.uniform(0, 1, (1000, 16))
    beyond = cal.max(axis=0) * (1 + 0.05 * rng.uniform(0, 1, (1000, 16)))
    qmodel = hgqir.quantize_keras(model)
    g = hgqir.from_keras(qmodel, calibration=cal)
    assert not _wraps(g, [cal]) and not _wraps(g, [beyond])
    qmodel.calibrate(cal, margin_bits=0)
    tight = hgqir.from_keras(qmodel)
    assert not _wraps(tight, [cal]) and _wraps(tight, [beyond])
    live = ~tight.inputs[0].type.zero_mask
    assert np.array_equal(g.inputs[0].type.i[live], tight.inputs[0].type.i[live] + 1)


def test_a_value_that_can_be_negative_keeps_its_sign_bit() -> None:
    """Calibration saw only positive values of a dense output (and of the input): the input keeps
    the data's sign (unsigned), the dense output a sign bit, in plain import and in a shim, so a
    fresh negative value does not wrap; with ``margin_bits=0`` (exact ranges) it does."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((1,)), L.Dense(1), L.Dense(2)])
    model.layers[0].kernel.assign(np.ones((1, 1)))
    model.layers[0].bias.assign(np.full((1,), -0.1875))
    cal = np.linspace(0.25, 1.0, 64)[:, None]
    fresh = cal[:8] / 4  # inside the input's range; the first dense output goes negative
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=cal)
    assert g.inputs[0].type.k.max() == 0  # the data's sign
    assert not _wraps(g, [fresh])
    qmodel = hgqir.quantize_keras(model)
    shim = hgqir.from_keras(qmodel, calibration=cal)
    assert shim.inputs[0].type.k.max() == 0 and not _wraps(shim, [fresh])
    qmodel.calibrate(cal, margin_bits=0)
    assert _wraps(hgqir.from_keras(qmodel), [fresh])
