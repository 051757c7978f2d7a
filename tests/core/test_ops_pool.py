"""Max and average pooling (windowed and global) against loops written here."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hgqir import FixedType, OpKind

from .helpers import assert_results_fit, expected_type, rand_type, rand_values, run_all_paths, single_op
from .reference import ref_quantize


def pool_reference(x: np.ndarray, pool, stride, pad, how: str, count_pad: bool = True) -> np.ndarray:
    """Windows over channels-last ``x``; max ignores padding, avg is an exact rational mean."""
    nd = len(pool)
    fill = -np.inf if how == "max" else 0.0
    xp = np.pad(x, [(0, 0), *pad, (0, 0)], constant_values=fill)
    real = np.pad(np.ones(x.shape[1:-1]), list(pad))
    out_sp = [(xp.shape[1 + d] - pool[d]) // stride[d] + 1 for d in range(nd)]
    out = np.empty((x.shape[0], *out_sp, x.shape[-1]), dtype=object)
    for pos in np.ndindex(*out_sp):
        win = tuple(slice(p * s, p * s + k) for p, s, k in zip(pos, stride, pool, strict=True))
        block = xp[(slice(None), *win)].reshape(x.shape[0], -1, x.shape[-1])
        if how == "max":
            out[(slice(None), *pos)] = block.max(axis=1)
            continue
        count = int(np.prod(pool)) if count_pad else int(real[win].sum())
        sums = [[sum(Fraction(v) for v in block[b, :, c]) for c in range(x.shape[-1])] for b in range(x.shape[0])]
        out[(slice(None), *pos)] = np.array(sums, dtype=object) / count
    return out


@pytest.mark.parametrize(
    ("shape", "pool", "stride", "pad"),
    [
        ((8, 3), (2,), (2,), ((0, 0),)),
        ((9, 2), (3,), (2,), ((1, 1),)),
        ((5, 6, 2), (2, 2), (2, 2), ((0, 0), (0, 0))),
        ((5, 5, 3), (3, 2), (1, 2), ((1, 1), (0, 1))),
    ],
)
def test_maxpool(shape, pool, stride, pad) -> None:
    rng = np.random.default_rng(20)
    kind = OpKind.MAXPOOL1D if len(shape) == 2 else OpKind.MAXPOOL2D
    t = rand_type(rng, shape, pruned=0.1)
    g = single_op(kind, [t], {"pool": pool, "stride": stride, "pad": pad})
    x = rand_values(rng, t, 60)
    want = pool_reference(x, pool, stride, pad, "max").astype(np.float64)
    assert np.array_equal(run_all_paths(g, x), want)
    assert_results_fit(g, x[:10])


@pytest.mark.parametrize("count_pad", [True, False])
@pytest.mark.parametrize(
    ("shape", "pool", "stride", "pad"),
    [((8, 3), (2,), (2,), ((0, 0),)), ((9, 2), (3,), (2,), ((1, 1),)), ((5, 5, 2), (3, 3), (2, 2), ((1, 1), (1, 1)))],
)
def test_avgpool_truncates_the_exact_mean(shape, pool, stride, pad, count_pad: bool) -> None:
    rng = np.random.default_rng(21)
    kind = OpKind.AVGPOOL1D if len(shape) == 2 else OpKind.AVGPOOL2D
    t = rand_type(rng, shape, pruned=0.1)
    g = single_op(kind, [t], {"pool": pool, "stride": stride, "pad": pad, "count_pad": count_pad})
    out = g.value("y").type
    x = rand_values(rng, t, 30)
    want = ref_quantize(pool_reference(x, pool, stride, pad, "avg", count_pad), out.k, out.i, out.f, "TRN", "WRAP")
    assert np.array_equal(run_all_paths(g, x), want)
    assert_results_fit(g, x[:6])


def test_avgpool_power_of_two_is_exact_and_narrow_type_wraps() -> None:
    rng = np.random.default_rng(22)
    t = rand_type(rng, (8, 2))
    g = single_op(OpKind.AVGPOOL1D, [t], {"pool": [4], "stride": [4], "pad": [[0, 0]]})
    x = rand_values(rng, t, 50)
    exact = pool_reference(x, (4,), (4,), ((0, 0),), "avg").astype(np.float64)
    assert np.array_equal(run_all_paths(g, x), exact)
    narrow = FixedType.uniform((2, 2), 1, 0, 2)
    g = single_op(OpKind.AVGPOOL1D, [t], {"pool": [4], "stride": [4], "pad": [[0, 0]]}, result=narrow)
    assert np.array_equal(run_all_paths(g, x), ref_quantize(exact, 1, 0, 2, "TRN", "WRAP"))


def test_global_pools() -> None:
    rng = np.random.default_rng(23)
    t = rand_type(rng, (3, 4, 5), pruned=0.1)
    x = rand_values(rng, t, 40)
    g = single_op(OpKind.GLOBAL_MAXPOOL, [t])
    assert np.array_equal(run_all_paths(g, x), x.reshape(40, -1, 5).max(axis=1))
    lo, hi = t.lo.reshape(-1, 5).max(0), t.hi.reshape(-1, 5).max(0)
    f = np.where(t.zero_mask, -999, t.f).reshape(-1, 5).max(0)
    assert g.value("y").type.canonical() == expected_type(lo, hi, f).canonical()
    g = single_op(OpKind.GLOBAL_AVGPOOL, [t])
    out = g.value("y").type
    means = np.array([[sum(Fraction(v) for v in x[b].reshape(-1, 5)[:, c]) / 12 for c in range(5)] for b in range(40)])
    assert np.array_equal(run_all_paths(g, x), ref_quantize(means, out.k, out.i, out.f, "TRN", "WRAP"))
    assert_results_fit(g, x)


def test_pool_padding_must_be_smaller_than_window() -> None:
    from hgqir import VerifyError

    from .helpers import inputs_graph

    g, (x,) = inputs_graph([FixedType.uniform((6, 2), 1, 2, 2)])
    with pytest.raises(VerifyError, match="padding must be smaller"):
        g.add(OpKind.MAXPOOL1D, [x], {"pool": [2], "stride": [1], "pad": [[2, 0]]})
