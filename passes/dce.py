"""``dce``: dead code elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hgqir.ir import Graph, OpKind

from .base import Pass, register


@register
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Erase ops whose results reach no output."""

    name: ClassVar[str] = "dce"
    keep_io: bool = True
    """Keep every graph input even when no output depends on it (the ports stay)."""

    def apply(self, g: Graph) -> int:
        removed = 0
        for op in reversed(list(g.ops)):
            if op.kind is OpKind.OUTPUT:
                continue
            if op.kind is OpKind.INPUT and self.keep_io:
                continue
            if all(not v.users for v in op.results):
                g.erase(op)
                removed += 1
        return removed
