"""The helper node chains :mod:`.export` writes around a ``Quant``, recognised on import.

QONNX has no ``RND`` rounding and no ``WRAP`` overflow, so the exporter writes them with
standard ops (see :mod:`.export`):

* ``RND`` / ``RND_MIN_INF``: ``Add(x, +-lsb/2)`` feeding a ``FLOOR`` / ``CEIL`` Quant;
* ``WRAP``: a wide Quant ``q``, then ``q - M * Floor((q + k*2**i) / M)`` with ``M = 2**(k+i)``.

:func:`find` maps each such Quant node (by its output) to a :class:`Fused` description, so that
the importer makes one ``quant`` op of it and the file round-trips into the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.fixed import RoundMode

from .reader import Const

SHIFTS = {("FLOOR", 0.5): RoundMode.RND, ("CEIL", -0.5): RoundMode.RND_MIN_INF}


@dataclass
class Fused:
    """How a Quant node and its helper nodes read together."""

    source: str | None = None
    """The Quant's real input when a rounding shift (``Add``) precedes it."""
    round: RoundMode | None = None
    """The ap_fixed rounding the shift and the Quant's mode make."""
    wrap: tuple[np.ndarray, np.ndarray] | None = None
    """``(k, i)`` of the wrap that follows (overflow WRAP), as arrays broadcasting like the scale."""
    output: str | None = None
    """The tensor holding the wrapped result (the chain's ``Sub``)."""


class _Index:
    def __init__(self, graph: Any, consts: dict[str, Const]) -> None:
        self.consts = consts
        self.producer = {o: n for n in graph.node for o in n.output}
        self.users: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.users.setdefault(i, []).append(n)

    def only_user(self, name: str, op_type: str) -> Any:
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def const_operand(self, node: Any, other: str) -> np.ndarray | None:
        """The constant operand of a binary ``node`` whose other operand is ``other``."""
        names = list(node.input)
        if len(names) != 2 or other not in names:
            return None
        c = names[1 - names.index(other)]
        return np.asarray(self.consts[c].values, dtype=np.float64) if c in self.consts else None


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return a.s.decode() if a.type == a.STRING else a.i
    return default


def find(graph: Any, consts: dict[str, Const]) -> tuple[dict[str, Fused], set[str]]:
    """Fused Quant nodes by output name, and the outputs of the helper nodes they absorb."""
    index, fused, absorbed = _Index(graph, consts), {}, set()
    for node in graph.node:
        if node.op_type != "Quant" or node.input[1] not in consts:
            continue
        scale = np.asarray(consts[node.input[1]].values, dtype=np.float64)
        f = Fused()
        shift = _shift(index, node, scale)
        if shift is not None:
            add, f.source, f.round = shift
            absorbed.add(add.output[0])
        chain = _wrap(index, node.output[0])
        if chain is not None:
            f.wrap, nodes = chain
            f.output = nodes[-1].output[0]
            absorbed.update(n.output[0] for n in nodes)
        if shift is not None or chain is not None:
            fused[node.output[0]] = f
    return fused, absorbed


def _shift(index: _Index, quant: Any, scale: np.ndarray) -> tuple[Any, str, RoundMode] | None:
    add = index.producer.get(quant.input[0])
    if add is None or add.op_type != "Add" or index.only_user(add.output[0], "Quant") is not quant:
        return None
    mode = str(_attr(quant, "rounding_mode", "ROUND")).upper()
    for source in add.input:
        c = index.const_operand(add, source)
        for (m, sign), rnd in SHIFTS.items():
            if c is not None and m == mode and _same(c, sign * scale):
                return add, source, rnd
    return None


def _wrap(index: _Index, q: str) -> tuple[tuple[np.ndarray, np.ndarray], list[Any]] | None:
    users = index.users.get(q, [])
    add = next((u for u in users if u.op_type == "Add"), None)
    sub = next((u for u in users if u.op_type == "Sub"), None)
    if len(users) != 2 or add is None or sub is None or list(sub.input)[0] != q:
        return None
    div = index.only_user(add.output[0], "Mul")
    floor = index.only_user(div.output[0], "Floor") if div is not None else None
    back = index.only_user(floor.output[0], "Mul") if floor is not None else None
    if div is None or floor is None or back is None or list(sub.input)[1] != back.output[0]:
        return None
    off, inv = index.const_operand(add, q), index.const_operand(div, add.output[0])
    span = index.const_operand(back, floor.output[0])
    if off is None or inv is None or span is None or not _same(inv * span, np.ones_like(span)):
        return None
    k = (off > 0).astype(np.int64)
    top = np.log2(span)
    if not np.all(top == np.round(top)):
        return None
    return (k, top.astype(np.int64) - k), [add, div, floor, back, sub]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    try:
        return bool(np.all(np.broadcast_arrays(a, b)[0] == np.broadcast_arrays(a, b)[1]))
    except ValueError:
        return False
