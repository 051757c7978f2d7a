"""Per-op tests (boundary, elementwise and shape ops) against numpy formulas written here.

Every expected result is computed in the test (numpy, or exact rationals from
``reference.py``), never by hgqir; every run goes through the float, int64 and Python-int
mantissa paths. See test_ops_linear.py, test_ops_pool.py and test_ops_table.py for the rest.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import hgqir
from hgqir import FixedType, OpKind, VerifyError
from hgqir.interp import run_exact

from .helpers import (
    assert_results_fit,
    expected_type,
    fractions,
    inputs_graph,
    rand_type,
    rand_values,
    run_all_paths,
    single_op,
)
from .reference import ref_quantize, ref_quantize_one, trn_wrap

ROUNDS = [m.name for m in hgqir.RoundMode]
OVERFLOWS = [m.name for m in hgqir.OverflowMode]


# ---------------------------------------------------------------- input, const, output
@pytest.mark.parametrize("r", ROUNDS)
@pytest.mark.parametrize("o", OVERFLOWS)
def test_input_converts_like_a_cast(r: str, o: str) -> None:
    rng = np.random.default_rng(1)
    t = rand_type(rng, (12,), pruned=0.2)
    g = hgqir.Graph()
    g.output(g.input("x", t, round=r, overflow=o))
    x = np.concatenate([rng.normal(0, 8, (40, 12)), np.ldexp(rng.integers(-99, 99, (20, 12)) + 0.5, -t.f)])
    want = ref_quantize(x, t.k, t.i, t.f, r, o)
    assert np.array_equal(run_all_paths(g, x), want)


def test_input_rejects_nan_and_wrong_shapes() -> None:
    g = hgqir.Graph()
    g.output(g.input("x", FixedType.uniform((3,), 1, 2, 2)))
    with pytest.raises(hgqir.HgqirError, match="NaN"):
        g.run(np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(hgqir.HgqirError, match="expects shape"):
        g.run(np.zeros((2, 4)))
    with pytest.raises(hgqir.HgqirError, match="takes 1 input"):
        g.run(np.zeros((2, 3)), np.zeros((2, 3)))
    assert g.run(np.array([0.3, -0.3, 9.0])).tolist() == [0.25, -0.5, 1.0]  # unbatched; 9 wraps mod 8


def test_wide_input_is_exact() -> None:
    """Input types of 70 and 72 bits: every double lands exactly (checked through run_exact)."""
    t = FixedType((3,), [1, 0, 1], [30, 40, 3], [39, 30, 66])
    g = hgqir.Graph()
    g.output(g.input("x", t, round="RND", overflow="WRAP"))
    x = np.array([[1 / 3, 12345.678, -(2.0**-60)], [-(2.0**29) - 0.1, 2.0**40 + 0.5, 5.0 + 2.0**-50]])
    got = fractions(run_exact(g, [x])["x"])
    want = [
        [ref_quantize_one(x[b, j], int(t.k[j]), int(t.i[j]), int(t.f[j]), "RND", "WRAP") for j in range(3)]
        for b in range(2)
    ]
    assert got.tolist() == want
    assert want[1][1] == Fraction(1, 2) and want[1][2] == Fraction(5 + 2.0**-50)  # wrapped; kept 52 bits


def test_const_values_and_errors() -> None:
    t = FixedType((4,), 1, [0, 1, 2, -1], [2, 2, 0, 3])
    g, _ = inputs_graph([])
    c = g.const([0.75, -2.0, 3.0, -0.5], t)
    g.output(c)
    assert g.run().tolist() == [0.75, -2.0, 3.0, -0.5]
    with pytest.raises(VerifyError, match="not representable"):
        g.const([0.1, 0, 0, 0], t)
    with pytest.raises(VerifyError, match="not representable"):
        g.const([0, 0, 4.0, 0], t)  # out of range (i=2 signed: -4..3)
    with pytest.raises(VerifyError, match="outside"):
        g.const_mantissa(np.array([0, 0, 0, 8]), t)  # -4..3 LSBs for (1,-1,3)
    wide = FixedType.uniform((2,), 1, 60, 40)
    data = np.array([-(2**100), 2**100 - 1], dtype=object)
    v = g.const_mantissa(data, wide, name="wide")
    g.output(v)
    g.verify()


def test_const_only_graph_and_multiple_outputs() -> None:
    g = hgqir.Graph()
    x = g.input("x", FixedType.uniform((2,), 1, 3, 1))
    c = g.const([1.5, -2.0], FixedType.uniform((2,), 1, 2, 1))
    g.output(x, name="a")
    g.output(g.add(OpKind.ADD, [x, c]).result, name="b")
    a, b = g.run(np.array([[1.0, 2.5]]))
    assert a.tolist() == [[1.0, 2.5]] and b.tolist() == [[2.5, 0.5]]


# ---------------------------------------------------------------- quant
@pytest.mark.parametrize("r", ROUNDS)
@pytest.mark.parametrize("o", OVERFLOWS)
def test_quant_per_element(r: str, o: str) -> None:
    rng = np.random.default_rng(2)
    src = rand_type(rng, (3, 5), bits=(6, 14), i_range=(0, 6))
    dst = rand_type(rng, (3, 5), bits=(1, 6), i_range=(-2, 3), pruned=0.15)
    g = single_op(OpKind.QUANT, [src], {"round": r, "overflow": o}, result=dst)
    x = rand_values(rng, src, 300)
    assert np.array_equal(run_all_paths(g, x), ref_quantize(x, dst.k, dst.i, dst.f, r, o))


def test_quant_wide_to_narrow_and_back() -> None:
    """70-bit values quantized to 8 bits, and 8-bit values moved into a 90-bit type: exact."""
    wide, narrow = FixedType.uniform((2,), 1, 35, 34), FixedType.uniform((2,), 1, 3, 4)
    g, (x,) = inputs_graph([wide])
    q = g.add(OpKind.QUANT, [x], {"round": "RND_CONV", "overflow": "SAT"}, [narrow]).result
    back = g.add(OpKind.QUANT, [q], {"round": "TRN", "overflow": "WRAP"}, [FixedType.uniform((2,), 1, 40, 49)])
    g.output(back.result)
    x_val = np.array([[2.0**-34 * 3 + 1.03125, -100.0], [7.96875 + 2.0**-34, -8.0 - 2.0**-30]])
    exact = run_exact(g, [x_val])
    want = ref_quantize(x_val, 1, 3, 4, "RND_CONV", "SAT")
    assert np.array_equal(np.vectorize(float)(fractions(exact[back.result.name])), want)
    assert exact[back.result.name].m.dtype == object


# ---------------------------------------------------------------- add, sub, mul, relu
@pytest.mark.parametrize("kind", [OpKind.ADD, OpKind.SUB, OpKind.MUL])
def test_binary_ops_match_numpy_and_infer_minimal(kind: OpKind) -> None:
    rng = np.random.default_rng(3)
    ta, tb = rand_type(rng, (4, 3), pruned=0.1), rand_type(rng, (4, 3), pruned=0.1)
    g = single_op(kind, [ta, tb])
    a, b = rand_values(rng, ta, 200), rand_values(rng, tb, 200)
    fn = {OpKind.ADD: np.add, OpKind.SUB: np.subtract, OpKind.MUL: np.multiply}[kind]
    assert np.array_equal(run_all_paths(g, a, b), fn(a, b))
    got = g.value("y").type
    if kind is OpKind.MUL:
        corners = np.stack([ta.lo * tb.lo, ta.lo * tb.hi, ta.hi * tb.lo, ta.hi * tb.hi])
        lo, hi, f = corners.min(0), corners.max(0), ta.f + tb.f
    else:
        blo, bhi = (tb.lo, tb.hi) if kind is OpKind.ADD else (-tb.hi, -tb.lo)
        lo, hi, f = (
            ta.lo + blo,
            ta.hi + bhi,
            np.maximum(np.where(ta.zero_mask, -99, ta.f), np.where(tb.zero_mask, -99, tb.f)),
        )
    assert got.canonical() == expected_type(lo, hi, f).canonical()
    assert_results_fit(g, a, b)


def test_binary_broadcast_lower_rank_operand() -> None:
    """[4, 3] + [3] broadcasts over the unbatched axes, never against the batch axis."""
    rng = np.random.default_rng(4)
    ta, tb = rand_type(rng, (4, 3)), rand_type(rng, (3,))
    for kind, fn in ((OpKind.ADD, np.add), (OpKind.SUB, np.subtract), (OpKind.MUL, np.multiply)):
        g = single_op(kind, [ta, tb])
        a, b = rand_values(rng, ta, 4), rand_values(rng, tb, 4)  # batch 4 == leading axis 4
        assert np.array_equal(run_all_paths(g, a, b), fn(a, b[:, None, :]))


def test_add_with_constant_uses_its_values() -> None:
    t = FixedType.uniform((2,), 0, 3, 2)
    g = single_op(OpKind.ADD, [t], consts=[(np.array([2, 0]), FixedType.uniform((2,), 0, 0, 2))])
    assert g.value("y").type == FixedType((2,), 0, [4, 3], 2)  # + 0.5 needs i=4; + 0 keeps i=3
    x = np.array([[7.75, 7.75], [0.0, 1.25]])
    assert run_all_paths(g, x).tolist() == [[8.25, 7.75], [0.5, 1.25]]


def test_narrower_declared_type_wraps_like_cpp() -> None:
    rng = np.random.default_rng(5)
    ta, tb = rand_type(rng, (6,), bits=(6, 10)), rand_type(rng, (6,), bits=(6, 10))
    out = rand_type(rng, (6,), bits=(2, 5), pruned=0.2)
    for kind, fn in ((OpKind.ADD, np.add), (OpKind.MUL, np.multiply), (OpKind.RELU, None)):
        types = [ta] if kind is OpKind.RELU else [ta, tb]
        g = single_op(kind, types, result=out)
        xs = [rand_values(rng, t, 300) for t in types]
        exact = np.maximum(xs[0], 0) if fn is None else fn(*xs)
        assert np.array_equal(run_all_paths(g, *xs), trn_wrap(exact, out.k, out.i, out.f))


def test_wide_mul_is_exact() -> None:
    """Two 45-bit operands: the 90-bit product goes through Python ints, not floats."""
    t = FixedType.uniform((2,), 1, 20, 24)
    g = single_op(OpKind.MUL, [t, t])
    a = np.array([[2.0**20 - 2.0**-24, -(2.0**20)], [12345.000061035156, 1 / 3 - (1 / 3) % 2.0**-24]])
    b = np.array([[2.0**20 - 2.0**-24, 2.0**-24 * 3], [-98765.25, 2.0**-24]])
    got = fractions(run_exact(g, [a, b])["y"])
    assert got.tolist() == [
        [Fraction(p) * Fraction(q) for p, q in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)
    ]
    assert g.value("y").type.width.max() > 53


def test_relu_and_minimal_type() -> None:
    rng = np.random.default_rng(6)
    t = rand_type(rng, (10,), pruned=0.2)
    g = single_op(OpKind.RELU, [t])
    x = rand_values(rng, t, 200)
    assert np.array_equal(run_all_paths(g, x), np.maximum(x, 0.0))
    want = expected_type(np.maximum(t.lo, 0), np.maximum(t.hi, 0), t.f)
    assert g.value("y").type.canonical() == want.canonical()


# ---------------------------------------------------------------- concat, reshape, transpose
def test_concat_reshape_transpose() -> None:
    rng = np.random.default_rng(7)
    ta, tb = rand_type(rng, (2, 3, 4)), rand_type(rng, (2, 1, 4), bits=(20, 40), i_range=(10, 20))
    a, b = rand_values(rng, ta, 50), rand_values(rng, tb, 50)
    g, (xa, xb) = inputs_graph([ta, tb])
    cat = g.add(OpKind.CONCAT, [xa, xb], {"axis": 1}).result
    tr = g.add(OpKind.TRANSPOSE, [cat], {"perm": [2, 0, 1]}).result
    rs = g.add(OpKind.RESHAPE, [tr], {"shape": [4, 8]}).result
    g.output(rs)
    want = np.concatenate([a, b], axis=2).transpose(0, 3, 1, 2).reshape(50, 4, 8)
    assert np.array_equal(run_all_paths(g, a, b), want)
    k_want = np.concatenate([ta.k, tb.k], axis=1).transpose(2, 0, 1).reshape(4, 8)
    assert np.array_equal(rs.type.k, k_want) and rs.type.shape == (4, 8)


@pytest.mark.parametrize(
    ("kind", "attrs", "shapes", "message"),
    [
        (OpKind.CONCAT, {"axis": 2}, [(2, 3), (2, 3)], "axis 2 out of range"),
        (OpKind.CONCAT, {"axis": 0}, [(2, 3), (2, 4)], "differ off axis"),
        (OpKind.RESHAPE, {"shape": [7]}, [(2, 3)], "cannot reshape"),
        (OpKind.TRANSPOSE, {"perm": [0, 0]}, [(2, 3)], "not a permutation"),
        (OpKind.ADD, {}, [(2, 3), (4,)], "do not broadcast"),
        (OpKind.ADD, {}, [(2, 3)], "takes 2 operand"),
        (OpKind.RELU, {"axis": 1}, [(2,)], "unknown attribute"),
    ],
)
def test_bad_shapes_and_attributes_are_verify_errors(kind, attrs, shapes, message) -> None:
    g, xs = inputs_graph([FixedType.uniform(s, 1, 2, 2) for s in shapes])
    with pytest.raises(VerifyError, match=message):
        g.add(kind, xs, attrs)
    assert [op.kind for op in g.ops] == [OpKind.INPUT] * len(shapes)  # graph unchanged
