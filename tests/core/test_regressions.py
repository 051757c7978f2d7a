"""Regressions found while building the backends: each once gave a silently wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

from hgqir import FixedType, Graph, OpKind, VerifyError
from hgqir.ops import make_table


def test_covering_survives_bounds_whose_lsb_count_overflows_float64() -> None:
    # 2**600 at f=600 is 2**1200 LSBs: scaling overflowed float64 and gave a 1-bit type
    t = FixedType.covering(np.array([-(2.0**600)]), np.array([2.0**600]), 600)
    assert (int(t.k[0]), int(t.i[0]), int(t.f[0])) == (1, 601, 600)


def test_covering_refuses_infinite_bounds() -> None:
    with pytest.raises(VerifyError, match="too large"):
        FixedType.covering(np.array([0.0]), np.array([np.inf]), 0)


def test_mul_of_huge_types_infers_a_type_that_holds_the_product() -> None:
    # used to infer i=-600 (width 1) after the LSB count overflowed float64
    g = Graph("huge")
    a = g.input("a", FixedType.uniform((2,), 1, 300, 300))
    b = g.input("b", FixedType.uniform((2,), 1, 300, 300))
    k, i, f = g.add(OpKind.MUL, [a, b]).result.type.scalar()
    assert k == 1 and f == 600 and i >= 601  # (-2**300) * (-2**300) = 2**600 must fit


def test_mul_beyond_float64_range_raises() -> None:
    g = Graph("huger")
    a = g.input("a", FixedType.uniform((2,), 1, 600, 0))
    b = g.input("b", FixedType.uniform((2,), 1, 600, 0))
    with pytest.raises(VerifyError, match="too large"):
        g.add(OpKind.MUL, [a, b])


def test_make_table_refuses_outputs_wider_than_float64() -> None:
    with pytest.raises(ValueError, match="53 bits"):
        make_table(np.tanh, (1, 2, 3), (1, 30, 30))


def test_make_table_at_53_bits_is_exact() -> None:
    data, t = make_table(lambda x: x, (1, 2, 3), (1, 26, 26))
    xs = np.arange(-32, 32)
    assert np.array_equal(data, xs * 2**23)
    assert t.scalar() == (1, 26, 26)
