"""The fused ``dense [-> relu] -> quant`` kernel in every rounding and overflow mode.

The fused kernel folds the quantizer's scale, its half-LSB and the ReLU into the product
(hgqir/fastpath.py); for every (rounding, overflow) pair, with and without ReLU, with narrow
per-element result types that do overflow, its results must equal the forced-exact path
(int64 mantissas, no float64 arithmetic) bit for bit, on inputs far outside the input range
too. Each case first checks that the fused plan is really made, so the test exercises it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgqir import FixedType, Graph, OpKind
from hgqir.fastpath import dense_plan, fusable_chain
from hgqir.fixed import OverflowMode, RoundMode
from hgqir.ops.base import cast_needed
from hgqir.quantize import mantissa_paths

MODES = [(r, o) for r in RoundMode for o in OverflowMode]


def chain_graph(seed: int, rmode: RoundMode, omode: OverflowMode, relu: bool) -> Graph:
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    g = Graph("chain")
    i_in = rng.integers(-1, 4, n_in)
    x = g.input("x", FixedType((n_in,), 1, i_in, rng.integers(0, 6, n_in)), round="RND", overflow="SAT")
    wt = FixedType((n_in, n_out), 1, rng.integers(-1, 3, (n_in, n_out)), rng.integers(2, 5, (n_in, n_out)))
    bt = FixedType((n_out,), 1, 2, rng.integers(0, 4, n_out))
    w = g.const_mantissa(_mantissas(rng, wt), wt, name="w")
    b = g.const_mantissa(_mantissas(rng, bt), bt, name="b")
    h = g.add(OpKind.DENSE, [x, w, b], name="fc").result
    if relu:
        h = g.add(OpKind.RELU, [h], name="act").result
    k = rng.integers(0, 2, n_out)
    i_out = rng.integers(-2, 3, n_out)  # narrow: sums overflow often
    f_out = rng.integers(-1, 4, n_out)
    attrs = {"round": rmode.value, "overflow": omode.value}
    q = g.add(OpKind.QUANT, [h], attrs, types=[FixedType((n_out,), k, i_out, f_out)], name="q")
    g.output(q.result)
    g.verify()
    return g


def _mantissas(rng: np.random.Generator, t: FixedType) -> np.ndarray:
    """Random signed mantissas inside each element's range."""
    top = np.left_shift(1, np.asarray(t.i + t.f, dtype=np.int64))
    return np.floor(rng.random(t.shape) * 2 * top).astype(np.int64) - top


def fused_plan_is_made(g: Graph) -> bool:
    dense = next(op for op in g.ops if op.kind is OpKind.DENSE)
    chain = fusable_chain(dense, {id(op): any(cast_needed(op)) for op in g.ops})
    e_x = np.broadcast_to(dense.operands[0].type.f, dense.operands[0].shape)
    return chain[-1].kind is OpKind.QUANT and dense_plan(chain, np.asarray(e_x)) is not None


@pytest.mark.parametrize(("rmode", "omode"), MODES, ids=[f"{r.value}-{o.value}" for r, o in MODES])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), relu=st.booleans())
def test_fused_chain_equals_forced_exact(rmode: RoundMode, omode: OverflowMode, seed: int, relu: bool) -> None:
    g = chain_graph(seed, rmode, omode, relu)
    assert fused_plan_is_made(g), str(g)
    rng = np.random.default_rng(seed + 1)
    n_in = g.inputs[0].shape[0]
    x = np.concatenate([rng.normal(size=(300, n_in)) * 4, rng.normal(size=(20, n_in)) * 1e4])
    fast = g.run(x)
    with mantissa_paths(float_bits=0):
        slow = g.run(x)
    assert np.array_equal(fast, slow), str(g)
