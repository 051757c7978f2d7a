"""Testbench data: inputs (inside and far outside each input's range) and the interpreter's golden
outputs as exact mantissas, in the word layout the C simulation writes (see ``io.h.j2``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.interp import run_exact
from hgqir.ir import Graph, Value
from hgqir.numbers import Exact

from .lowering import Port


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


def element_mantissas(e: Exact, v: Value) -> np.ndarray:
    """Batched mantissas of each element at its own ``f`` (Python ints; 0 for pruned elements)."""
    t = v.type
    m = np.asarray(e.m)
    m = np.broadcast_to(m, (m.shape[0], *v.shape)).reshape(m.shape[0], -1)
    f = np.asarray(t.f).reshape(-1)
    live = ~np.asarray(t.zero_mask).reshape(-1)
    out = np.zeros(m.shape, dtype=object)
    for j in np.nonzero(live)[0]:
        shift = int(f[j]) - int(e.scale)
        col = [int(x) for x in m[:, j]]
        out[:, j] = [x << shift if shift >= 0 else x >> -shift for x in col]
    return out


def to_words(m: np.ndarray, words: int) -> np.ndarray:
    """Mantissas (Python ints, [batch, size]) as little-endian signed 64-bit words [batch, size * words]."""
    if words == 1:
        return m.astype(np.int64)
    mask = (1 << 64) - 1
    flat = []
    for x in m.reshape(-1):
        for k in range(words):
            w = (int(x) >> (64 * k)) & mask
            flat.append(w - (1 << 64) if w >> 63 else w)
    return np.array(flat, dtype=np.int64).reshape(m.shape[0], -1)


def from_words(buf: np.ndarray, words: int) -> np.ndarray:
    """Inverse of :func:`to_words`: Python-int mantissas [batch, size] (int64 when words == 1)."""
    if words == 1:
        return buf
    n, slots = buf.shape
    raw = buf.reshape(n, slots // words, words)
    out = np.zeros(raw.shape[:2], dtype=object)
    for idx in np.ndindex(*raw.shape[:2]):
        x = sum((int(w) & ((1 << 64) - 1)) << (64 * k) for k, w in enumerate(raw[idx]))
        out[idx] = x - (1 << (64 * words)) if x >> (64 * words - 1) else x
    return out


def golden(g: Graph, inputs: list[np.ndarray], outputs: list[Port]) -> list[np.ndarray]:
    """The interpreter's outputs for ``inputs`` as output words, one array per output port."""
    exact = run_exact(g, inputs)
    return [to_words(element_mantissas(exact[p.value.name], p.value), p.words) for p in outputs]


def write(folder: Path, inputs: list[np.ndarray], gold: list[np.ndarray]) -> int:
    """Write ``inputs.dat`` and ``outputs.dat``; returns the number of samples."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(inputs[0]) if inputs else (len(gold[0]) if gold else 1)
    with open(folder / "inputs.dat", "w") as fin:
        for s in range(n):
            row = [repr(float(x)) for a in inputs for x in a[s].reshape(-1)]
            fin.write(" ".join(row or ["."]) + "\n")
    with open(folder / "outputs.dat", "w") as fout:
        for s in range(n):
            fout.write(" ".join(str(int(x)) for w in gold for x in w[s]) + "\n")
    return n
