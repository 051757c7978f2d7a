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
