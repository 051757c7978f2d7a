"""Graph builders and checkers shared by the core tests."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from hgqir import FixedType, Graph, OpKind, Value
from hgqir.interp import run_exact
from hgqir.numbers import Exact
from hgqir.quantize import mantissa_paths

from .reference import fits, minimal_kif

ALL_PATHS = ({}, {"float_bits": 0}, {"float_bits": 0, "int_bits": 0})
"""Fast float path, forced int64, forced Python ints."""


def rand_type(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    k: Any = None,
    bits: tuple[int, int] = (1, 8),
    i_range: tuple[int, int] = (-3, 5),
    pruned: float = 0.0,
) -> FixedType:
    """Random per-element type; a fraction ``pruned`` of the elements gets width 0."""
    k = rng.integers(0, 2, size=shape) if k is None else np.broadcast_to(k, shape)
    width = rng.integers(bits[0], bits[1] + 1, size=shape)
    if pruned:
        width = np.where(rng.random(shape) < pruned, 0, width)
    i = rng.integers(i_range[0], i_range[1] + 1, size=shape)
    return FixedType(shape, k, i, width - k - i)


def rand_values(rng: np.random.Generator, t: FixedType, n: int, corners: bool = True) -> np.ndarray:
    """``n`` random samples of representable values (float64) of ``t``; first rows hit lo and hi."""
    live = ~t.zero_mask
    e = np.where(live, t.i + t.f, 0).astype(np.float64)
    lo_m, hi_m = -t.k * np.exp2(e), np.exp2(e) - 1
    m = np.floor(lo_m + rng.random((n, *t.shape)) * (hi_m - lo_m + 1))
    if corners and n >= 2:
        m[0], m[1] = lo_m, hi_m
    return np.where(live, np.ldexp(m, -t.f), 0.0) + 0.0


def inputs_graph(types: list[FixedType], name: str = "g") -> tuple[Graph, list[Value]]:
    """A graph with one TRN/WRAP input per type (representable data passes unchanged)."""
    g = Graph(name)
    return g, [g.input(f"x{n}", t) for n, t in enumerate(types)]


def single_op(
    kind: OpKind,
    types: list[FixedType],
    attrs: dict[str, Any] | None = None,
    consts: list[tuple[np.ndarray, FixedType]] = (),
    result: FixedType | None = None,
) -> Graph:
    """Graph: inputs of ``types``, constants (mantissas, type), one ``kind`` op, its output."""
    g, xs = inputs_graph(types)
    cs = [g.const_mantissa(np.asarray(d), t, name=f"c{n}") for n, (d, t) in enumerate(consts)]
    op = g.add(kind, [*xs, *cs], attrs or {}, None if result is None else [result], name="y")
    g.output(op.result)
    g.verify()
    return g


def run_all_paths(g: Graph, *xs: np.ndarray) -> np.ndarray:
    """``g.run`` on every mantissa path; asserts they agree bit for bit and returns the result."""
    results = []
    for limits in ALL_PATHS:
        with mantissa_paths(**limits):
            results.append(g.run(*xs, batch=True))
    for r in results[1:]:
        assert np.array_equal(r, results[0]), "mantissa paths disagree"
    return results[0]


def fractions(e: Exact) -> np.ndarray:
    """Exact values of an :class:`Exact` as an object array of Fractions."""
    scale = Fraction(2) ** e.scale
    flat = [Fraction(int(m)) / scale for m in e.m.reshape(-1)]
    return np.array(flat, dtype=object).reshape(e.m.shape)


def assert_results_fit(g: Graph, *xs: np.ndarray) -> None:
    """Every value's exact result is representable in its declared type (no hidden overflow)."""
    exact = run_exact(g, list(xs))
    for v in g.values():
        vals = np.array([float(a) for a in fractions(exact[v.name]).flat]).reshape(exact[v.name].m.shape)
        t = v.type
        assert fits(vals, t.k, t.i, t.f).all(), f"%{v.name} holds values outside its type"


def expected_type(lo: np.ndarray, hi: np.ndarray, f: np.ndarray) -> FixedType:
    """Minimal per-element type of grid values in [lo, hi] with LSB 2**-f (test-side formula)."""
    lo, hi, f = np.broadcast_arrays(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), f)
    kif = [minimal_kif(Fraction(a), Fraction(b), int(c)) for a, b, c in zip(lo.flat, hi.flat, f.flat, strict=True)]
    k, i, ff = (np.array(col, dtype=np.int64).reshape(lo.shape) for col in zip(*kif, strict=True))
    return FixedType(lo.shape, k, i, ff)


def kif_of(t: FixedType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.asarray(t.k), np.asarray(t.i), np.asarray(t.f)
