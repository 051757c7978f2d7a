"""The lowering table: one entry per op kind, as data (like the core's op rule table).

An entry has a ``check`` that returns why hls4ml cannot express an op exactly (or ``None``)
and a ``lower`` that appends the op's hls4ml layers to a :class:`~.builder.LayerList`.
Every op is checked before anything is built, so one error lists every unsupported op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hgqir.ir import Op, OpKind, Value

from .builder import LayerList

Check = Callable[[Op], "str | None"]
Lower = Callable[[LayerList, Op], None]


def no_reason(op: Op) -> str | None:
    return None


@dataclass(frozen=True)
class Lowering:
    """How one op kind becomes hls4ml layers."""

    lower: Lower
    check: Check = no_reason


LOWERINGS: dict[OpKind, Lowering] = {}


def lowering(*kinds: OpKind, check: Check = no_reason) -> Callable[[Lower], Lower]:
    """Register ``fn`` as the lowering of ``kinds``."""

    def wrap(fn: Lower) -> Lower:
        for kind in kinds:
            LOWERINGS[kind] = Lowering(fn, check)
        return fn

    return wrap


def is_const(v: Value) -> bool:
    return v.producer is not None and v.producer.kind is OpKind.CONST


def const_data_operands(op: Op) -> str | None:
    """Reason when an op that computes on tensors gets a constant operand hls4ml has no layer for."""
    for v in op.operands:
        if is_const(v):
            return f"operand %{v.name} is a constant; hls4ml has no constant tensors in io_parallel"
    return None
