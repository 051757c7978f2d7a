"""Test vectors: port mantissas to and from float data and the hex lines the testbench reads."""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.fixed import OverflowMode, RoundMode
from hgqir.interp import exact_from_float

from .lower import Port
from .netlist import Netlist, run


def input_mantissas(port: Port, x: np.ndarray) -> np.ndarray:
    """Each element's mantissa at its own ``f`` (``[batch, size]`` Python ints), as the interpreter
    converts float data (the input op's rounding and overflow)."""
    v = port.value
    ex = exact_from_float(
        x.reshape(len(x), *v.shape), v.type, RoundMode.parse(port.round), OverflowMode.parse(port.overflow)
    )
    m = np.asarray(ex.m).reshape(len(x), -1)
    _, _, f = port.kif
    out = np.zeros(m.shape, dtype=object)
    for j, w in enumerate(port.widths):
        if w <= 0:
            continue
        sh = int(f[j]) - ex.scale
        col = [int(a) for a in m[:, j]]
        out[:, j] = [a << sh if sh >= 0 else a >> -sh for a in col]
    return out


def to_values(port: Port, m: np.ndarray) -> np.ndarray:
    """Port mantissas (``[batch, size]``, each at its element's ``f``) -> float64 values."""
    _, _, f = port.kif
    vals = np.array([[float(a) for a in row] for row in m], dtype=np.float64).reshape(m.shape)
    return np.ldexp(vals, -f.astype(np.int64)) + 0.0


def run_netlist(net: Netlist, inputs: list[Port], outputs: list[Port], xs: list[np.ndarray]) -> list[np.ndarray]:
    """Evaluate the netlist in Python: output values ``[batch, size]`` per output port."""
    mant = [input_mantissas(p, x) for p, x in zip(inputs, xs, strict=True)]
    vals = run(net, [m.astype(np.int64) if _fits(m) else m for m in mant])
    n = len(xs[0]) if xs else 1
    outs = []
    for p in outputs:
        cols = []
        for r in p.refs:
            v = np.broadcast_to(vals[r.node], (n,))
            cols.append(np.ldexp(np.array([float(a) for a in v]), net.exp(r)) * (-1.0 if r.neg else 1.0) + 0.0)
        outs.append(np.stack(cols, axis=1) if cols else np.zeros((n, 0)))
    return outs


def _fits(m: np.ndarray) -> bool:
    return all(abs(int(a)) < (1 << 60) for a in m.reshape(-1))


# ---------------------------------------------------------------------- hex lines
def pack(ports: list[Port], mantissas: list[np.ndarray]) -> list[str]:
    """One hex line per sample: every live element's bits, first element in the lowest bits."""
    widths = [w for p in ports for w in p.widths if w > 0]
    total = max(sum(widths), 1)
    digits = -(-total // 4)
    n = len(mantissas[0]) if mantissas else 0
    lines = []
    for s in range(n):
        word, at = 0, 0
        for p, m in zip(ports, mantissas, strict=True):
            for j, w in enumerate(p.widths):
                if w > 0:
                    word |= (int(m[s, j]) & ((1 << w) - 1)) << at
                    at += w
        lines.append(format(word, f"0{digits}x"))
    return lines


def unpack(ports: list[Port], lines: list[str]) -> list[np.ndarray]:
    """Inverse of :func:`pack` for output ports: signed mantissas ``[batch, size]`` per port."""
    outs: list[Any] = [np.zeros((len(lines), len(p.refs)), dtype=object) for p in ports]
    for s, line in enumerate(lines):
        word = int(line, 16)
        at = 0
        for p, out in zip(ports, outs, strict=True):
            k, _, _ = p.kif
            for j, w in enumerate(p.widths):
                if w > 0:
                    m = (word >> at) & ((1 << w) - 1)
                    if k[j] and m >> (w - 1):
                        m -= 1 << w
                    out[s, j] = m
                    at += w
    return outs
