"""Property tests of the reference quantizer and the exact mantissa quantizer (hypothesis)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hgqir
from hgqir.fixed import OverflowMode, RoundMode
from hgqir.quantize import QuantizeError, mantissa_paths, quantize_exact

from .reference import ref_quantize_one

ROUNDS = [m.name for m in RoundMode]
OVERFLOWS = [m.name for m in OverflowMode]
PROPS = settings(max_examples=150, deadline=None)


@st.composite
def kif(draw: st.DrawFn, max_width: int = 40) -> tuple[int, int, int]:
    k = draw(st.integers(0, 1))
    width = draw(st.integers(-3, max_width))
    i = draw(st.integers(-20, 60))
    return k, i, width - k - i


@st.composite
def value_for(draw: st.DrawFn, t: tuple[int, int, int]) -> float:
    """Plain floats, exact ties and grid values around the type's range."""
    k, i, f = t
    kind = draw(st.sampled_from(["float", "tie", "grid", "near"]))
    if kind == "float":
        return draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
    span = 2 ** max(min(i + f + 2, 50), 0)
    m = draw(st.integers(-span, span))
    frac = {"tie": 0.5, "grid": 0.0, "near": draw(st.sampled_from([0.25, 0.75, 1 - 2**-20]))}[kind]
    return float(np.ldexp(m + frac, -f)) if abs(f) < 900 else 0.0


@st.composite
def cases(draw: st.DrawFn, max_width: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 8))
    types = [draw(kif(max_width)) for _ in range(n)]
    xs = [draw(value_for(t)) for t in types]
    k, i, f = (np.array(c, dtype=np.int64) for c in zip(*types, strict=True))
    return np.array(xs), k, i, f


@PROPS
@given(cases(max_width=120), st.sampled_from(ROUNDS), st.sampled_from(OVERFLOWS))
def test_quantize_equals_rational_reference(case, r: str, o: str) -> None:
    """Every width (wide ones through the integer paths) against exact rationals."""
    x, k, i, f = case
    got = hgqir.quantize(x, k, i, f, round=r, overflow=o)
    want = [float(ref_quantize_one(a, *map(int, t), r, o)) for a, *t in zip(x, k, i, f, strict=True)]
    assert got.tolist() == want


@PROPS
@given(cases(), st.sampled_from(ROUNDS), st.sampled_from(OVERFLOWS))
def test_idempotent_in_range_and_on_grid(case, r: str, o: str) -> None:
    x, k, i, f = case
    q = hgqir.quantize(x, k, i, f, round=r, overflow=o)
    assert np.array_equal(hgqir.quantize(q, k, i, f, round=r, overflow=o), q)
    live = k + i + f > 0
    m = np.ldexp(q, f)
    assert np.all(m == np.floor(m))
    assert np.all(q[~live] == 0)
    lo, hi = -k * np.ldexp(1.0, i), np.ldexp(1.0, i) - np.ldexp(1.0, -f)
    assert np.all(((q >= lo) & (q <= hi)) | ~live)


@PROPS
@given(
    kif(),
    st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30),
    st.sampled_from(ROUNDS),
    st.sampled_from(["SAT", "SAT_SYM"]),
)
def test_monotone_when_saturating(t, xs, r: str, o: str) -> None:
    x = np.sort(np.array(xs))
    q = hgqir.quantize(x, *t, round=r, overflow=o)
    assert np.all(np.diff(q) >= 0)


@st.composite
def mantissa_cases(draw: st.DrawFn) -> tuple[list[int], int, tuple[int, int, int]]:
    bits = draw(st.sampled_from([10, 40, 51, 60, 61, 90, 200]))
    ms = draw(st.lists(st.integers(-(2**bits) + 1, 2**bits - 1), min_size=1, max_size=6))
    scale = draw(st.integers(-30, 120))
    return ms, scale, draw(kif(max_width=draw(st.sampled_from([8, 52, 62, 100]))))


@PROPS
@given(mantissa_cases(), st.sampled_from(ROUNDS), st.sampled_from(OVERFLOWS))
def test_quantize_exact_agrees_on_every_mantissa_path(case, r: str, o: str) -> None:
    """float64, int64 and Python-int mantissas give the same exact values as rationals."""
    ms, scale, (k, i, f) = case
    want = [ref_quantize_one(Fraction(m) / Fraction(2) ** scale, k, i, f, r, o) for m in ms]
    one = np.ones(len(ms), dtype=np.int64)
    inputs = [np.array(ms, dtype=object)]
    if max(abs(m) for m in ms) < 2**52:
        inputs.append(np.array(ms, dtype=np.float64))
    if max(abs(m) for m in ms) < 2**62:
        inputs.append(np.array(ms, dtype=np.int64))
    for arr in inputs:
        for limits in ({}, {"float_bits": 0}, {"float_bits": 0, "int_bits": 0}):
            with mantissa_paths(**limits):
                q, s = quantize_exact(arr, scale, one * k, one * i, one * f, RoundMode[r], OverflowMode[o])
            got = [Fraction(int(v)) / Fraction(2) ** s for v in q]
            assert got == want, (arr.dtype, limits)


def test_mantissa_paths_select_dtypes() -> None:
    m = np.array([3.0, -5.0])
    one = np.ones(2, dtype=np.int64)
    q, _ = quantize_exact(m, 1, one, one * 3, one * 2, RoundMode.RND, OverflowMode.WRAP)
    assert q.dtype == np.float64
    with mantissa_paths(float_bits=0):
        q, _ = quantize_exact(m, 1, one, one * 3, one * 2, RoundMode.RND, OverflowMode.WRAP)
        assert q.dtype == np.int64
    with mantissa_paths(float_bits=0, int_bits=0):
        q, _ = quantize_exact(m, 1, one, one * 3, one * 2, RoundMode.RND, OverflowMode.WRAP)
        assert q.dtype == object
    with pytest.raises(ValueError):
        with mantissa_paths(float_bits=60):
            pass


@pytest.mark.parametrize(
    ("x", "kif", "r", "o", "want"),
    [
        (-np.nextafter(0.5, 0), (1, 3, 0), "RND_MIN_INF", "WRAP", 0.0),  # not a tie: rounds to 0
        (-np.nextafter(0.5, 0), (1, 3, 0), "RND_INF", "WRAP", 0.0),
        (-5e-324, (1, 5, -2), "TRN", "WRAP", -4.0),  # tiny negative floors to -1 LSB
        (2.0**62, (1, 62, 0), "WRAP", "WRAP", -(2.0**62)),  # 64-bit wrap, exact
        (-3.0, (1, 0, 0), "TRN", "SAT_SYM", -1.0),  # 1-bit signed SAT_SYM keeps -1 (ap_fixed)
        (-4.0, (1, 2, 0), "TRN", "SAT_SYM", -3.0),  # the most negative value itself moves
        (7.9, (0, 3, 0), "TRN", "SAT_SYM", 7.0),  # unsigned: SAT_SYM is SAT
    ],
)
def test_corner_cases(x: float, kif: tuple[int, int, int], r: str, o: str, want: float) -> None:
    r = "TRN" if r == "WRAP" else r
    assert hgqir.quantize([x], *kif, round=r, overflow=o).tolist() == [want]


def test_bad_arguments_raise_hgqir_errors() -> None:
    with pytest.raises(QuantizeError, match="NaN"):
        hgqir.quantize([np.nan], 1, 2, 3)
    with pytest.raises(hgqir.HgqirError, match="k must be 0 or 1"):
        hgqir.quantize([1.0], 2, 2, 3)
    with pytest.raises(ValueError, match="valid"):
        hgqir.quantize([1.0], 1, 2, 3, round="NEAREST")


def test_broadcasts_per_element_types() -> None:
    x = np.array([[0.3, 0.3, 0.3], [-0.3, -0.3, -0.3]])
    got = hgqir.quantize(x, k=[1, 1, 0], i=0, f=[1, 2, 3], round="RND", overflow="SAT")
    assert got.tolist() == [[0.5, 0.25, 0.25], [-0.5, -0.25, 0.0]]


def test_scalars_and_empty_arrays() -> None:
    assert hgqir.quantize(0.3, 1, 2, 2) == 0.25
    assert hgqir.quantize(-0.3, 1, 40, 30) == float(ref_quantize_one(-0.3, 1, 40, 30))  # 0-d, integer path
    assert hgqir.quantize([], 1, 2, 2).shape == (0,)
    assert hgqir.quantize(np.zeros((0, 3)), 1, [1, 2, 3], 2).shape == (0, 3)


@PROPS
@given(cases(max_width=90), st.sampled_from(ROUNDS), st.sampled_from(OVERFLOWS))
def test_quantize_equals_quantize_exact_on_every_path(case, r: str, o: str) -> None:
    """The public float quantizer and the interpreter's mantissa quantizer agree exactly."""
    x, k, i, f = case
    want = [ref_quantize_one(a, *map(int, t), r, o) for a, *t in zip(x, k, i, f, strict=True)]
    assert hgqir.quantize(x, k, i, f, round=r, overflow=o).tolist() == [float(w) for w in want]
    for limits in ({}, {"float_bits": 0}, {"float_bits": 0, "int_bits": 0}):
        with mantissa_paths(**limits):
            q, s = quantize_exact(x, 0, k, i, f, RoundMode[r], OverflowMode[o])
        assert [Fraction(int(m)) / Fraction(2) ** s for m in q] == want, limits
