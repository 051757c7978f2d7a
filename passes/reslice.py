"""Apply a :class:`~hgqir.passes.channel_plan.ChannelPlan`: rebuild the ops it shrinks.

Values cannot change shape in place, so every op touched by the plan is rebuilt (in graph
order, each new op placed right before the old one), users are pointed at the new results,
the old ops are erased and the new values take the old names back.
"""

from __future__ import annotations

import numpy as np

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait

from ._consts import atomic, is_const, mantissas, minimal_const
from .channel_plan import ChannelPlan, Fold

_NONE = np.iinfo(np.int64).min // 2


def _take(t: FixedType, keep: np.ndarray | None) -> FixedType:
    return t if keep is None else t.map(lambda a: np.take(a, keep, axis=-1))


def _pow2(e: np.ndarray) -> np.ndarray:
    flat = [1 << int(v) for v in np.asarray(e).reshape(-1)]
    return np.array(flat, dtype=object).reshape(np.shape(e))


def folded_bias(sink: Op, fold: Fold) -> tuple[np.ndarray, FixedType]:
    """Bias of ``sink`` plus its constant input channels times their weights, exactly.

    Constant ``v[c]`` reaches output ``o`` through every kernel position, so the bias gains
    ``v[c] * sum_k w[k, c, o]`` (a dense has one position).
    """
    w = sink.operands[1]
    cin, cout = w.shape[-2:]
    mw, fw = (np.asarray(a).reshape(-1, cin, cout)[:, fold.channels, :] for a in mantissas(w))
    live = mw != 0
    prod_f = fw + fold.f[None, :, None]
    if len(sink.operands) == 3:
        mb, fb = mantissas(sink.operands[2])
    else:
        mb, fb = np.zeros(cout, dtype=np.int64), np.zeros(cout, dtype=np.int64)
    f = np.maximum(np.max(np.where(live, prod_f, _NONE), axis=(0, 1)), np.where(mb != 0, fb, _NONE))
    f = np.where(f == _NONE, 0, f)
    prod = mw.astype(object) * fold.mantissas[None, :, None]
    terms = np.where(live, prod * _pow2(np.where(live, f - prod_f, 0)), 0).sum(axis=(0, 1))
    bias = np.where(mb != 0, np.asarray(mb).astype(object) * _pow2(np.where(mb != 0, f - fb, 0)), 0)
    return minimal_const(np.asarray(bias + terms, dtype=object), f)


class Reslicer:
    """Rebuilds the ops of one plan; remembers the names to give back."""

    def __init__(self, g: Graph, plan: ChannelPlan) -> None:
        self.g, self.plan = g, plan
        self.names: list[tuple[Value, str]] = []

    def const(self, data: np.ndarray, t: FixedType, name: str, before: Op) -> Value:
        v = self.g.const_mantissa(np.ascontiguousarray(data), t, name=name, before=before)
        self.names.append((v, name))
        return v

    def sliced(self, v: Value, cuts: dict[int, np.ndarray | None], before: Op) -> Value:
        """A new const holding ``v`` with only the ``cuts[axis]`` indices along each axis."""

        def cut(a: np.ndarray) -> np.ndarray:
            for axis, keep in cuts.items():
                a = a if keep is None else np.take(a, keep, axis=axis)
            return a

        data = cut(np.asarray(v.producer.attrs["data"]))  # type: ignore[union-attr]
        return self.const(data, v.type.map(cut), v.name, before)

    def linear_operands(self, op: Op, x: Value) -> list[Value]:
        w = op.operands[1]
        rows, cols = self.plan.rows.get(op), self.plan.cols.get(op)
        out = [x, self.sliced(w, {-2: rows, -1: cols}, op)]
        fold = self.plan.folds.get(op)
        if fold is not None:
            data, t = folded_bias(op, fold)
            name = op.operands[2].name if len(op.operands) == 3 else f"{op.result.name}_b"
            kept = data if cols is None else np.take(data, cols)
            out.append(self.const(kept, _take(t, cols), name, op))
        elif len(op.operands) == 3:
            out.append(self.sliced(op.operands[2], {-1: cols}, op))
        return out

    def rebuild(self, op: Op, operands: list[Value]) -> Op:
        if Trait.CONTRACTS in op.rule.traits:
            operands = self.linear_operands(op, operands[0])
        for n, v in enumerate(operands):
            keep = self.plan.params.get((op, n))
            if keep is not None:
                operands[n] = self.sliced(v, {-1: keep}, op)
        attrs = dict(op.attrs)
        types = [_take(v.type, self.plan.keep.get(v)) for v in op.results]
        if op.kind is OpKind.RESHAPE and op.result in self.plan.keep:
            attrs["shape"] = (*attrs["shape"][:-1], len(self.plan.keep[op.result]))
        new = self.g.add(op.kind, operands, attrs, types, name=op.result.name, before=op)
        self.names += [(nv, v.name) for nv, v in zip(new.results, op.results, strict=True)]
        return new

    def touched(self, op: Op) -> bool:
        p = self.plan
        return (
            any(v in p.keep for v in op.results)
            or op in p.rows
            or op in p.cols
            or op in p.folds
            or any((op, n) in p.params for n in range(len(op.operands)))
        )

    def run(self) -> None:
        """Rebuild, redirect, erase, rename; on any failure the graph is restored."""
        with atomic(self.g, "prune-zero-bits: shrinking channels"):
            self._finish(self._rebuild_all())

    def _rebuild_all(self) -> list[Op]:
        g = self.g
        vmap: dict[Value, Value] = {}
        rebuilt: list[Op] = []
        for op in list(g.ops):
            operands = [vmap.get(v, v) for v in op.operands]
            if self.touched(op):
                try:
                    new = self.rebuild(op, operands)
                except Exception as e:
                    raise HgqirError(f"rebuilding {op!r} failed: {type(e).__name__}: {e}") from e
                vmap.update(zip(op.results, new.results, strict=True))
                rebuilt.append(op)
                continue
            for n, v in enumerate(operands):
                if v is not op.operands[n]:
                    g.set_operand(op, n, v)
        return rebuilt

    def _finish(self, rebuilt: list[Op]) -> None:
        g = self.g
        consts = {v.producer for op in rebuilt for v in op.operands if is_const(v)}
        for op in reversed(rebuilt):
            g.erase(op)
        for c in consts:
            if c is not None and not c.result.users:
                g.erase(c)
        for v, name in self.names:
            if v.name != name and not _taken(g, name):
                g.rename(v, name)


def _taken(g: Graph, name: str) -> bool:
    try:
        g.value(name)
    except KeyError:
        return False
    return True


def apply_plan(g: Graph, plan: ChannelPlan) -> None:
    """Rebuild every op the plan touches; the graph keeps its names and stays valid."""
    Reslicer(g, plan).run()
