"""Keras Maximum / Minimum / Average merges and global pooling with ``keepdims=True``: shim
(exact, EBOPs equal), plain float import, refusals."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from keras_testlib import L, check_shim, data, float64_scope

import hgqir
from hgqir.ir import OpKind


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _merged(cls: type, n: int) -> keras.Model:
    inp = keras.Input((5,))
    branches = [L.Dense(4, activation="relu" if k % 2 else None)(inp) for k in range(n)]
    return keras.Model(inp, L.Dense(2)(cls()(branches)))


@pytest.mark.parametrize(
    "cls, n, kind",
    [
        (L.Maximum, 2, OpKind.MAXIMUM),
        (L.Maximum, 3, OpKind.MAXIMUM),
        (L.Minimum, 2, OpKind.MINIMUM),
        (L.Average, 2, OpKind.ADD),
        (L.Average, 4, OpKind.ADD),
    ],
)
def test_merges_are_exact(cls: type, n: int, kind: OpKind) -> None:
    _, g = check_shim(_merged(cls, n), data((5,)))
    assert len(g.ops_of(kind)) == n - 1
    if cls is L.Average:
        (mul,) = g.ops_of(OpKind.MUL)
        assert float(hgqir.ops.linear.const_exact(mul.operands[1]).values()[0]) == 1.0 / n


@pytest.mark.parametrize("cls", [L.Maximum, L.Minimum, L.Average])
def test_plain_import_follows_the_float_model(cls: type) -> None:
    keras.utils.set_random_seed(1)
    model = _merged(cls, 2)
    x = data((5,), n=200, seed=2)
    with pytest.warns(UserWarning):
        g = hgqir.from_keras(model, calibration=x[:150])
    want = np.asarray(model.predict(x[150:], verbose=0))
    assert np.abs(g.run(x[150:]) - want).max() < 0.02


def test_average_of_three_is_refused() -> None:
    with pytest.raises(hgqir.UnsupportedOpError, match="power-of-two"):
        hgqir.quantize_keras(_merged(L.Average, 3))


@pytest.mark.parametrize(
    "pool, shape",
    [
        (L.GlobalAveragePooling2D, (4, 4, 2)),
        (L.GlobalMaxPooling2D, (4, 4, 2)),
        (L.GlobalAveragePooling1D, (8, 2)),
        (L.GlobalMaxPooling1D, (8, 2)),
    ],
)
def test_global_pooling_keepdims(pool: type, shape: tuple[int, ...]) -> None:
    inp = keras.Input(shape)
    conv = L.Conv2D(3, 1) if len(shape) == 3 else L.Conv1D(3, 1)
    model = keras.Model(inp, L.Flatten()(L.Dense(2)(pool(keepdims=True)(conv(inp)))))
    _, g = check_shim(model, data(shape))
    kind = OpKind.GLOBAL_AVGPOOL if "Average" in pool.__name__ else OpKind.GLOBAL_MAXPOOL
    (op,) = g.ops_of(kind)
    assert op.result.users[0].kind is OpKind.RESHAPE
    with pytest.warns(UserWarning):
        plain = hgqir.from_keras(model, calibration=data(shape))
    x = data(shape, seed=3)
    assert np.abs(plain.run(x) - np.asarray(model.predict(x, verbose=0))).max() < 0.05
