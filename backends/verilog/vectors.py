"""Test vectors: port mantissas to and from float data and the hex lines the testbench reads."""

from __future__ import annotations

from typing import Any

import numpy as np
from hgqir.passes.netlist.lower import Port
from hgqir.passes.netlist.netlist import Netlist, run

from hgqir.fixed import OverflowMode, RoundMode
from hgqir.interp import exact_from_float


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
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _layout(ports: list[Port]) -> list[tuple[int, int, int, int, bool]]:
    """``(port, element, bit offset, width, signed)`` of every live element, lowest bits first."""
    out, at = [], 0
    for n, p in enumerate(ports):
        k, _, _ = p.kif
        for j, w in enumerate(p.widths):
            if w > 0:
                out.append((n, j, at, w, bool(k[j])))
                at += w
    return out


def pack(ports: list[Port], mantissas: list[np.ndarray]) -> list[str]:
    """One hex line per sample: every live element's bits, first element in the lowest bits."""
    layout = _layout(ports)
    total = max(sum(e[3] for e in layout), 1)
    digits = -(-total // 4)
    n = len(mantissas[0]) if mantissas else 0
    bits = np.zeros((n, digits * 4), dtype=np.uint8)  # LSB first
    for p, j, at, w, _ in layout:
        col = mantissas[p][:, j]
        if w <= 62:
            m = np.array([int(v) for v in col], dtype=np.int64) & ((1 << w) - 1)
            bits[:, at : at + w] = (m[:, None] >> np.arange(w)) & 1
        else:
            for s, v in enumerate(col):
                u = int(v) & ((1 << w) - 1)
                bits[s, at : at + w] = [(u >> b) & 1 for b in range(w)]
    nibbles = bits[:, ::-1].reshape(n, digits, 4) @ np.array([8, 4, 2, 1], dtype=np.uint8)
    text = _HEX[nibbles]
    return [row.tobytes().decode() for row in text]


def unpack(ports: list[Port], lines: list[str]) -> list[np.ndarray]:
    """Inverse of :func:`pack` for output ports: signed mantissas ``[batch, size]`` per port."""
    n = len(lines)
    outs: list[Any] = [np.zeros((n, len(p.refs)), dtype=object) for p in ports]
    layout = _layout(ports)
    if not layout or not n:
        return outs
    raw = np.frombuffer("".join(lines).encode(), dtype=np.uint8).reshape(n, -1)
    nib = np.where(raw >= ord("a"), raw - ord("a") + 10, raw - ord("0")).astype(np.uint8)
    bits = ((nib[:, :, None] >> np.array([3, 2, 1, 0], dtype=np.uint8)) & 1).reshape(n, -1)[:, ::-1]
    for p, j, at, w, signed in layout:
        b = bits[:, at : at + w]
        if w <= 62:
            m = b.astype(np.int64) @ (np.int64(1) << np.arange(w, dtype=np.int64))
            if signed:
                m = m - (b[:, -1].astype(np.int64) << w)
            outs[p][:, j] = m
        else:
            for s in range(n):
                u = sum(int(x) << k for k, x in enumerate(b[s]))
                outs[p][s, j] = u - (1 << w) if signed and b[s, -1] else u
    return outs
