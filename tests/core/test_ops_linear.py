"""dense, conv1d, conv2d and batchnorm against loops and numpy formulas written here."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hgqir import FixedType, OpKind
from hgqir.interp import run_exact

from .helpers import assert_results_fit, expected_type, fractions, rand_type, rand_values, run_all_paths, single_op
from .reference import trn_wrap


def const_weights(rng: np.random.Generator, shape: tuple[int, ...], pruned: float = 0.2, bits: int = 6):
    """(mantissas, type) of a per-element constant; pruned elements have width 0 and mantissa 0."""
    t = rand_type(rng, shape, bits=(2, bits), i_range=(-2, 2), pruned=pruned)
    values = rand_values(rng, t, 1, corners=False)[0]
    return np.ldexp(values, t.f).astype(np.int64), t, values


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, pad) -> np.ndarray:
    """Channels-last convolution written as plain loops over output positions and kernel taps."""
    nd = w.ndim - 2
    xp = np.pad(x, [(0, 0), *pad, (0, 0)])
    out_sp = [(xp.shape[1 + d] - w.shape[d]) // stride[d] + 1 for d in range(nd)]
    out = np.zeros((x.shape[0], *out_sp, w.shape[-1]))
    for pos in np.ndindex(*out_sp):
        for tap in np.ndindex(*w.shape[:nd]):
            src = tuple(p * s + t for p, s, t in zip(pos, stride, tap, strict=True))
            out[(slice(None), *pos)] += xp[(slice(None), *src)] @ w[tap]
    return out + b


# ---------------------------------------------------------------- dense
def test_dense_matches_numpy_and_infers_minimal_types() -> None:
    rng = np.random.default_rng(10)
    tx = rand_type(rng, (7,), pruned=0.2)
    wd, wt, wv = const_weights(rng, (7, 5))
    bd, bt, bv = const_weights(rng, (5,))
    g = single_op(OpKind.DENSE, [tx], consts=[(wd, wt), (bd, bt)])
    x = rand_values(rng, tx, 400)
    assert np.array_equal(run_all_paths(g, x), x @ wv + bv)
    lo = np.minimum(tx.lo[:, None] * wv, tx.hi[:, None] * wv).sum(0) + bv
    hi = np.maximum(tx.lo[:, None] * wv, tx.hi[:, None] * wv).sum(0) + bv
    fx = np.where(tx.zero_mask, -999, tx.f)[:, None] + np.where(wd == 0, -999, wt.f)
    f = np.maximum(fx.max(0), np.where(bd == 0, -999, bt.f))
    assert g.value("y").type.canonical() == expected_type(lo, hi, f).canonical()
    assert_results_fit(g, x)


def test_dense_batched_leading_axes_and_no_bias() -> None:
    rng = np.random.default_rng(11)
    tx = rand_type(rng, (3, 4))
    wd, wt, wv = const_weights(rng, (4, 2))
    g = single_op(OpKind.DENSE, [tx], consts=[(wd, wt)])
    x = rand_values(rng, tx, 50)
    assert np.array_equal(run_all_paths(g, x), x @ wv)


def test_dense_declared_narrow_type_wraps() -> None:
    rng = np.random.default_rng(12)
    tx = rand_type(rng, (6,), bits=(6, 8))
    wd, wt, wv = const_weights(rng, (6, 4))
    out = rand_type(rng, (4,), bits=(3, 6), pruned=0.25)
    g = single_op(OpKind.DENSE, [tx], consts=[(wd, wt)], result=out)
    x = rand_values(rng, tx, 300)
    assert np.array_equal(run_all_paths(g, x), trn_wrap(x @ wv, out.k, out.i, out.f))


def test_wide_dense_is_exact() -> None:
    """40-bit inputs times 30-bit weights: 70-bit products and sums through Python ints."""
    tx = FixedType.uniform((3,), 1, 20, 19)
    wt = FixedType.uniform((3, 2), 1, 2, 27)
    wd = np.array([[2**29 - 1, -(2**29)], [12345677, 1], [-3, 2**28 + 7]], dtype=np.int64)
    g = single_op(OpKind.DENSE, [tx], consts=[(wd, wt)])
    x = np.array([[2.0**20 - 2.0**-19, -(2.0**20), 1234.5678 - (1234.5678 % 2.0**-19)]])
    got = fractions(run_exact(g, [x])["y"])[0]
    w = [[Fraction(int(m), 2**27) for m in row] for row in wd]
    want = [sum(Fraction(x[0, j]) * w[j][o] for j in range(3)) for o in range(2)]
    assert got.tolist() == want
    assert g.value("y").type.width.max() > 62


# ---------------------------------------------------------------- convolutions
@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "pad"),
    [
        ((9, 3), (3,), (1,), ((0, 0),)),
        ((9, 3), (4,), (2,), ((1, 2),)),
        ((6, 7, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),
        ((7, 6, 2), (3, 2), (2, 1), ((0, 1), (1, 0))),
    ],
)
def test_conv_matches_loops(x_shape, kernel, stride, pad) -> None:
    rng = np.random.default_rng(13)
    kind = OpKind.CONV1D if len(x_shape) == 2 else OpKind.CONV2D
    tx = rand_type(rng, x_shape, pruned=0.1)
    wd, wt, wv = const_weights(rng, (*kernel, x_shape[-1], 4))
    bd, bt, bv = const_weights(rng, (4,))
    g = single_op(kind, [tx], {"stride": stride, "pad": pad}, consts=[(wd, wt), (bd, bt)])
    x = rand_values(rng, tx, 40)
    assert np.array_equal(run_all_paths(g, x), conv_reference(x, wv, bv, stride, pad))
    assert_results_fit(g, x[:8])


def test_conv_declared_type_and_pruned_weights() -> None:
    rng = np.random.default_rng(14)
    tx = rand_type(rng, (8, 2), bits=(4, 8))
    wd, wt, wv = const_weights(rng, (3, 2, 3), pruned=0.5)
    out = FixedType.uniform((4, 3), 1, 2, 3)
    g = single_op(OpKind.CONV1D, [tx], {"stride": [2], "pad": [[1, 0]]}, consts=[(wd, wt)], result=out)
    x = rand_values(rng, tx, 100)
    assert np.array_equal(run_all_paths(g, x), trn_wrap(conv_reference(x, wv, 0.0, (2,), ((1, 0),)), 1, 2, 3))


# ---------------------------------------------------------------- batchnorm
def test_batchnorm_is_per_channel_affine() -> None:
    rng = np.random.default_rng(15)
    tx = rand_type(rng, (5, 3), pruned=0.1)
    sd, st, sv = const_weights(rng, (3,))
    od, ot, ov = const_weights(rng, (3,))
    g = single_op(OpKind.BATCHNORM, [tx], consts=[(sd, st), (od, ot)])
    x = rand_values(rng, tx, 200)
    assert np.array_equal(run_all_paths(g, x), x * sv + ov)
    corners = np.stack([tx.lo * sv, tx.hi * sv])
    f = np.maximum(np.where(tx.zero_mask | (sd == 0), -999, tx.f + st.f), np.where(od == 0, -999, ot.f))
    want = expected_type(corners.min(0) + ov, corners.max(0) + ov, f)
    assert g.value("y").type.canonical() == want.canonical()
    assert_results_fit(g, x)


def test_weights_must_be_constants() -> None:
    from hgqir import VerifyError

    from .helpers import inputs_graph

    g, (x, w) = inputs_graph([FixedType.uniform((3,), 1, 2, 2), FixedType.uniform((3, 2), 1, 2, 2)])
    op = g.add(OpKind.DENSE, [x, w])
    g.output(op.result)
    with pytest.raises(VerifyError, match="must be a const"):
        g.verify()
