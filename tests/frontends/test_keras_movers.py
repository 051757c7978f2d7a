"""Keras ZeroPadding, Cropping, UpSampling (nearest) and RepeatVector: built from concat, slice
and reshape, exact in shim and plain import, through the Vitis C++ and Verilog backends."""

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


def _image_model() -> keras.Model:
    inp = keras.Input((5, 4, 2))
    h = L.Conv2D(3, 1)(inp)
    h = L.ZeroPadding2D(((1, 2), (0, 1)))(h)
    h = L.Conv2D(2, 3)(h)
    h = L.UpSampling2D((2, 3))(h)
    h = L.Cropping2D(((1, 0), (2, 1)))(h)
    return keras.Model(inp, L.Flatten()(h))


def _sequence_model() -> keras.Model:
    inp = keras.Input((6, 2))
    h = L.Conv1D(3, 1)(inp)
    h = L.ZeroPadding1D(2)(h)
    h = L.UpSampling1D(2)(h)
    h = L.Cropping1D((3, 1))(h)
    v = L.GlobalMaxPooling1D()(h)
    return keras.Model(inp, L.Flatten()(L.Dense(2)(L.RepeatVector(3)(v))))


@pytest.mark.parametrize("make, shape", [(_image_model, (5, 4, 2)), (_sequence_model, (6, 2))])
def test_movers_are_exact_in_shim_and_plain_import(make, shape) -> None:  # type: ignore[no-untyped-def]
    model = make()
    _, g = check_shim(model, data(shape))
    kinds = [op.kind for op in g.ops]
    assert OpKind.SLICE in kinds and OpKind.CONCAT in kinds
    with pytest.warns(UserWarning):
        plain = hgqir.from_keras(model, calibration=data(shape, n=128))
    x = data(shape, seed=2)
    assert np.abs(plain.run(x) - np.asarray(model.predict(x, verbose=0))).max() < 0.05


def test_movers_match_keras_on_exact_values() -> None:
    """On values every type holds exactly, the moved tensor equals Keras' own float result."""
    inp = keras.Input((3, 4, 2))
    out = L.Cropping2D(((0, 1), (1, 1)))(L.UpSampling2D(2)(L.ZeroPadding2D(1)(inp)))
    model = keras.Model(inp, out)
    x = np.round(data((3, 4, 2), seed=4) * 4) / 4
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=x, default_type=(1, 5, 2))
    assert np.array_equal(g.run(x), np.asarray(model.predict(x, verbose=0)))


def test_bilinear_upsampling_is_refused() -> None:
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, L.UpSampling2D(2, interpolation="bilinear")(inp))
    with pytest.raises(hgqir.UnsupportedOpError, match="nearest"):
        hgqir.quantize_keras(model)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vitis", "verilog"])
def test_movers_through_backends(tmp_path: Path, backend: str) -> None:
    _, g = check_shim(_image_model(), data((5, 4, 2)))
    prj = hgqir.emit(g, backend, tmp_path / backend).compile()
    xs = data((5, 4, 2), n=20, seed=5) * 3
    assert np.array_equal(prj.predict(xs), g.run(xs))
