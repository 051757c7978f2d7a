"""``canonicalize``: local simplifications that never change a result bit.

Rules are small ``(kind, function)`` entries; a function returns the value that replaces the
op's result, or None to leave the op alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hgqir.fixed import OverflowMode
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import cast_needed

from .base import Pass, register

Rule = Callable[[Graph, Op], Value | None]


def _identity_reshape(g: Graph, op: Op) -> Value | None:
    x = op.operands[0]
    return x if x.shape == op.result.shape and op.result.type == x.type else None


def _identity_transpose(g: Graph, op: Op) -> Value | None:
    perm = op.attrs["perm"]
    x = op.operands[0]
    same = list(perm) == list(range(len(perm)))
    return x if same and op.result.type == x.type else None


def _reshape_chain(g: Graph, op: Op) -> Value | None:
    """reshape(reshape(x)) -> reshape(x), unless the inner reshape casts (its type is narrower)."""
    x = op.operands[0]
    inner = x.producer
    if inner is None or inner.kind is not OpKind.RESHAPE or any(cast_needed(inner)):
        return None
    g.set_operand(op, 0, inner.operands[0])
    if not x.users:
        g.erase(inner)
    return None


def _noop_quant(g: Graph, op: Op) -> Value | None:
    """A quant to its input's own type changes nothing, except SAT_SYM on a signed type.

    SAT_SYM maps the most negative value -2**i to -(2**i - 2**-f) even without overflow
    (as ap_fixed does), so it is an identity only where that value cannot occur.
    """
    x = op.operands[0]
    if op.result.type != x.type:
        return None
    if op.attrs["overflow"] is OverflowMode.SAT_SYM:
        t = x.type
        if np.any((t.k == 1) & (t.width > 1)):
            return None
    return x


def _relu_of_unsigned(g: Graph, op: Op) -> Value | None:
    x = op.operands[0]
    live = ~x.type.zero_mask
    unsigned = not np.any(x.type.k[live])
    return x if unsigned and op.result.type == x.type else None


RULES: dict[OpKind, list[Rule]] = {
    OpKind.RESHAPE: [_reshape_chain, _identity_reshape],
    OpKind.TRANSPOSE: [_identity_transpose],
    OpKind.QUANT: [_noop_quant],
    OpKind.RELU: [_relu_of_unsigned],
}


@register
@dataclass(frozen=True)
class Canonicalize(Pass):
    """Apply the local rewrite rules until nothing changes, then drop what became dead."""

    name: ClassVar[str] = "canonicalize"
    max_iterations: int = 10
    """Give up after this many sweeps over the graph."""

    def apply(self, g: Graph) -> int:
        changed = 0
        for _ in range(self.max_iterations):
            before = changed
            for op in list(g.ops):
                if op.graph is not g:
                    continue
                for rule in RULES.get(op.kind, []):
                    new = rule(g, op)
                    if new is not None and new is not op.result:
                        g.replace_uses(op.result, new)
                        g.erase(op)
                        changed += 1
                        break
            if changed == before:
                break
        return changed
