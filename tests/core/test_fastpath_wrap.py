"""The fast WRAP kernel equals the reference overflow handling on every integer grid value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import hgqir
from hgqir.fastpath import wrap_grid
from hgqir.fixed import FixedType, OverflowMode
from hgqir.quantize import _overflow


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(0, 1),
    width=st.integers(-2, 50),
    q=st.lists(st.integers(-(2**51) + 1, 2**51 - 1), min_size=1, max_size=20),
)
def test_wrap_grid_equals_the_reference(k: int, width: int, q: list[int]) -> None:
    qa = np.array(q, dtype=np.float64)
    ka, wa = np.full(qa.shape, k), np.full(qa.shape, width)
    w = np.maximum(wa, 1)
    off = np.where(ka == 1, np.ldexp(1.0, w - 1), 0.0)
    got = wrap_grid(qa.copy(), off, np.ldexp(1.0, w), np.ldexp(1.0, -w))
    want = _overflow(qa, ka, wa, OverflowMode.WRAP)
    assert np.array_equal(got, want)


def test_wrapping_inputs_fast_and_exact_paths_agree() -> None:
    g = hgqir.Graph("w")
    t = FixedType((4,), np.array([1, 0, 1, 1]), np.array([2, 3, -1, 20]), np.array([3, 2, 6, 30]))
    x = g.input("x", t, round="RND", overflow="WRAP")
    g.output(g.add(hgqir.OpKind.RELU, [x]).result)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3000, 4)) * np.array([40.0, 100.0, 3.0, 1e7])
    big = data.copy()
    big[:10] = 2.0**45  # beyond the fast kernel's reach for the widest element: generic path
    from hgqir.quantize import mantissa_paths

    for d in (data, big):
        fast = g.run(d)
        with mantissa_paths(float_bits=0):
            exact = g.run(d)
        assert np.array_equal(fast, exact)
