"""Testbench inputs shared by the backends: the user's own, or random ones inside and far outside
each input's range (so that rounding, wrap and saturation all happen in the golden data)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.ir import Graph


def testbench_inputs(g: Graph, given: Any, n: int, seed: int) -> list[np.ndarray]:
    """``given`` (the ``tb_inputs`` option) checked against the graph, else ``n`` random samples."""
    return as_inputs(g, given) if given is not None else random_inputs(g, n, seed)


def random_inputs(g: Graph, n: int, seed: int) -> list[np.ndarray]:
    """Half the samples spread over each input's range (off-grid: exercises rounding), half far
    outside it (exercises wrap and saturation)."""
    rng = np.random.default_rng(seed)
    out = []
    for v in g.inputs:
        t = v.type
        lo, hi = np.asarray(t.lo), np.asarray(t.hi)
        span = np.maximum(hi - lo, np.ldexp(1.0, -np.asarray(t.f)))
        inside = lo + rng.random((n, *v.shape)) * span
        outside = (lo + hi) / 2 + rng.normal(size=(n, *v.shape)) * 4 * span
        out.append(np.where(np.arange(n).reshape(-1, *([1] * len(v.shape))) < n // 2, inside, outside))
    return out


def as_inputs(g: Graph, data: Any) -> list[np.ndarray]:
    """User-given testbench inputs: one batch-first array per graph input."""
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(g.inputs):
        raise HgqirError(f"tb_inputs: graph {g.name!r} takes {len(g.inputs)} input(s), got {len(arrays)}")
    out = []
    for a, v in zip(arrays, g.inputs, strict=True):
        a = np.asarray(a, dtype=np.float64)
        if a.shape[1:] != v.shape:
            raise HgqirError(
                f"tb_inputs for %{v.name}: expected [batch, {', '.join(map(str, v.shape))}], got {list(a.shape)}"
            )
        out.append(a)
    return out
