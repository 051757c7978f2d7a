"""Hand-made typed graphs and the exactness check shared by the vitis backend tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import hgqir
from hgqir import FixedType, Graph, Value
from hgqir.ops import make_table


def rand_type(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    bits: tuple[int, int] = (2, 9),
    i_range: tuple[int, int] = (-1, 4),
    pruned: float = 0.0,
    k: Any = None,
) -> FixedType:
    """Random per-element type; a fraction ``pruned`` of the elements gets width 0."""
    k = rng.integers(0, 2, shape) if k is None else np.broadcast_to(k, shape)
    width = rng.integers(bits[0], bits[1] + 1, shape)
    width = np.where(rng.random(shape) < pruned, 0, width)
    i = rng.integers(i_range[0], i_range[1] + 1, shape)
    return FixedType(shape, k, i, width - k - i)


def rand_const(
    g: Graph, rng: np.random.Generator, shape: tuple[int, ...], name: str, zeros: float = 0.25, **kw: Any
) -> Value:
    """A constant with random per-element types and mantissas; a fraction of exact zeros."""
    t = rand_type(rng, shape, **{"bits": (1, 7), "i_range": (-1, 2), **kw})
    live = ~t.zero_mask
    e = np.where(live, t.i + t.f, 0)
    lo = np.where(live, -t.k * (1 << e), 0)
    hi = np.where(live, (1 << e) - 1, 0)
    data = np.floor(lo + rng.random(shape) * (hi - lo + 1)).astype(np.int64)
    data = np.where(rng.random(shape) < zeros, 0, data)
    return g.const_mantissa(data, t, name=name)


def wild_inputs(g: Graph, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Data over each input's range and far outside it, plus exact ties of the rounding."""
    out = []
    for v in g.inputs:
        lo, hi, f = np.asarray(v.type.lo), np.asarray(v.type.hi), np.asarray(v.type.f)
        span = np.maximum(hi - lo, 1.0)
        inside = lo + rng.random((n, *v.shape)) * span
        ties = (np.floor(inside * 2.0 ** (f + 1)) + 0.5) * 2.0 ** -(f + 1)
        far = rng.normal(size=(n, *v.shape)) * span * 8
        pick = rng.integers(0, 3, (n, *v.shape))
        out.append(np.where(pick == 0, inside, np.where(pick == 1, ties, far)))
    return out


def exp_tables(g: Graph, x_f: int, length_bits: int = 6) -> tuple[Value, Value, tuple[int, int, int]]:
    """exp(-d) over d LSBs of 2**-x_f and 1/s over inv_in: the two softmax tables."""
    exp_m, exp_t = make_table(lambda v: np.exp(-v), (0, length_bits - x_f, x_f), (0, 1, 7))
    inv_kif = (0, 4, 3)
    inv_m, inv_t = make_table(lambda v: 1 / np.maximum(v, 2.0**-3), inv_kif, (0, 3, 6))
    return g.const_mantissa(exp_m, exp_t, name="exp"), g.const_mantissa(inv_m, inv_t, name="inv"), inv_kif


def check(g: Graph, xs: list[np.ndarray], folder: Path, csim: bool = False, **options: Any) -> Any:
    """Emit, compile with g++, and require predict == g.run bit for bit (and the testbench to pass)."""
    prj = hgqir.emit(g, "vitis", folder, **options).compile()
    got = prj.predict(*xs)
    want = g.run(*xs)
    got, want = (r if isinstance(r, list) else [r] for r in (got, want))
    for n, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape, f"output {n}: shape {a.shape} != {b.shape}"
        bad = np.argwhere(a != b)
        assert not len(bad), (
            f"output {n}: {len(bad)} mismatches, first at {bad[0]}: {a[tuple(bad[0])]} != {b[tuple(bad[0])]}"
        )
    if csim:
        result = prj.csim()
        assert result.passed and result.samples > 0, result.output
    return prj
