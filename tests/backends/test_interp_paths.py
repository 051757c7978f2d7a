"""The interpreter's fast paths against its forced-exact path on every op of the shared graphs.

``Graph.run`` takes fused float64 kernels and float64 mantissas wherever their exactness is
proven (docs/internals.md, "Runtime exactness"); ``mantissa_paths(float_bits=0)`` turns every
float path off (int64 mantissas, Python ints when wider). Both must give the same bits on every
op and mode the backends are tested with: dense, conv, every pool, add/sub/mul, concat, reshape,
transpose, batchnorm, tables, softmax, and every rounding and overflow mode.
"""

from __future__ import annotations

import numpy as np
import op_graphs
import pytest
from vitis_graphs import wild_inputs

from hgqir.quantize import mantissa_paths


def _same_on_both_paths(g, xs) -> None:
    fast = g.run(*xs)
    with mantissa_paths(float_bits=0):
        slow = g.run(*xs)
    fast, slow = (y if isinstance(y, list) else [y] for y in (fast, slow))
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("name", op_graphs.GRAPHS)
def test_fast_and_forced_exact_paths_agree_on_op_graphs(name: str) -> None:
    _same_on_both_paths(*getattr(op_graphs, name)())


def test_fast_and_forced_exact_paths_agree_on_networks() -> None:
    for g in (op_graphs.mlp(np.random.default_rng(10)), op_graphs.cnn(np.random.default_rng(11))):
        _same_on_both_paths(g, wild_inputs(g, np.random.default_rng(2), 2000))
