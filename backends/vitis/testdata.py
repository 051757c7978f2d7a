"""Testbench data: the interpreter's golden outputs as exact mantissas, in the word layout the C
simulation writes (see ``io.h.j2``); the inputs come from :mod:`hgqir.backends.testbench`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hgqir.interp import run_exact
from hgqir.ir import Graph, Value
from hgqir.numbers import Exact

from .lowering import Port


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
