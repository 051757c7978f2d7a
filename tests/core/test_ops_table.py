"""lut and softmax: table semantics of hgqir/ops/table.py, recomputed here with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from hgqir import FixedType, Graph, OpKind, VerifyError
from hgqir.ops import build_lut

from .helpers import inputs_graph, rand_type, rand_values, run_all_paths
from .reference import ref_quantize


def table_mantissas(fn, in_kif: tuple[int, int, int], out_kif: tuple[int, int, int]) -> np.ndarray:
    """fn over every value of in_kif (lowest first), quantized RND/SAT, as mantissas."""
    k, i, f = in_kif
    lo = -k * 2 ** (i + f)
    xs = np.arange(lo, lo + 2 ** (k + i + f)) * 2.0**-f
    return np.ldexp(ref_quantize(fn(xs), *out_kif, "RND", "SAT"), out_kif[2]).astype(np.int64)


@pytest.mark.parametrize("fn", [np.tanh, lambda v: 1 / (1 + np.exp(-v)), np.square])
def test_lut_applies_the_function_through_its_table(fn) -> None:
    rng = np.random.default_rng(30)
    t = rand_type(rng, (6,), k=1, bits=(3, 7), i_range=(0, 2), pruned=0.2)
    g, (x,) = inputs_graph([t])
    g.output(build_lut(g, x, fn, (1, 1, 6)))
    xv = rand_values(rng, t, 200)
    want = ref_quantize(fn(xv), 1, 1, 6, "RND", "SAT")
    assert np.array_equal(run_all_paths(g, xv), want)


def test_lut_of_exact_result_with_finer_runtime_scale() -> None:
    """dense whose finest weights are 0: its exact result is finer than its type; lut must rescale."""
    tx = FixedType.uniform((2,), 1, 1, 2)
    wt = FixedType((2, 1), 1, 1, [[2], [8]])  # the f=8 weight holds 0
    g, (x,) = inputs_graph([tx])
    w = g.const_mantissa(np.array([[3], [0]]), wt, name="w")
    y = g.add(OpKind.DENSE, [x, w]).result
    assert y.type.union()[2] == 4
    g.output(build_lut(g, y, np.abs, (0, 4, 4)))
    xv = rand_values(np.random.default_rng(31), tx, 100)
    assert np.array_equal(run_all_paths(g, xv), np.abs(xv[:, :1] * 0.75))


def test_lut_table_size_is_checked() -> None:
    g, (x,) = inputs_graph([FixedType.uniform((2,), 1, 1, 2)])
    table = g.const_mantissa(np.zeros(8, dtype=np.int64), FixedType.uniform((8,), 1, 2, 2))
    with pytest.raises(VerifyError, match="table needs 16 entries"):
        op = g.add(OpKind.LUT, [x, table])
        op.rule.check(op)


def softmax_reference(x: np.ndarray, xf: int, exp_m: np.ndarray, exp_kif, inv_m, inv_kif) -> np.ndarray:
    """The documented recipe, step by step, with values instead of mantissas where possible."""
    d = np.round((x.max(axis=-1, keepdims=True) - x) * 2.0**xf).astype(np.int64)
    e = exp_m[np.minimum(d, len(exp_m) - 1)] * 2.0 ** -exp_kif[2]
    s = ref_quantize(e.sum(axis=-1, keepdims=True), *inv_kif, "TRN", "SAT")
    k, i, f = inv_kif
    idx = np.round(s * 2.0**f).astype(np.int64) + k * 2 ** (i + f)
    return e * (inv_m[idx] * 2.0 ** -INV_OUT[2])


INV_OUT = (0, 3, 6)
EXP_OUT = (0, 1, 7)


def test_softmax_recipe() -> None:
    rng = np.random.default_rng(32)
    t = FixedType((5,), 1, [2, 2, 1, 2, 2], [3, 2, 3, 3, 1])
    xf = 3
    exp_m = table_mantissas(lambda v: np.exp(-v), (0, 3, xf), EXP_OUT)  # d = 0 .. 2**6-1 LSBs
    inv_kif = (0, 3, 3)
    inv_m = table_mantissas(lambda v: 1 / np.maximum(v, 2.0**-3), inv_kif, INV_OUT)
    g, (x,) = inputs_graph([t])
    et = g.const_mantissa(exp_m, FixedType.uniform(exp_m.shape, *EXP_OUT), name="exp")
    it = g.const_mantissa(inv_m, FixedType.uniform(inv_m.shape, *INV_OUT), name="inv")
    g.output(g.add(OpKind.SOFTMAX, [x, et, it], {"inv_in": inv_kif}).result)
    g.verify()
    xv = rand_values(rng, t, 300)
    want = softmax_reference(xv, xf, exp_m, EXP_OUT, inv_m, inv_kif)
    assert np.array_equal(run_all_paths(g, xv), want)


def test_softmax_inv_table_size_checked() -> None:
    g = Graph()
    x = g.input("x", FixedType.uniform((3,), 1, 2, 2))
    et = g.const_mantissa(np.zeros(4, dtype=np.int64), FixedType.uniform((4,), 0, 1, 2))
    it = g.const_mantissa(np.zeros(4, dtype=np.int64), FixedType.uniform((4,), 0, 1, 2))
    with pytest.raises(VerifyError, match="inv_table needs 64 entries"):
        g.add(OpKind.SOFTMAX, [x, et, it], {"inv_in": (0, 3, 3)})
