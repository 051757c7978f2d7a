"""The op rule table: one :class:`~hgqir.ops.base.OpRule` per :class:`~hgqir.ir.OpKind`."""

from __future__ import annotations

from . import core, depthwise, elementwise, linear, pool, shape, table  # noqa: F401  (registration)
from .base import RULES, Attr, Cast, Interval, OpRule, Trait, cast_needed, interval_of, registrar
from .table import build_lut, make_table

__all__ = [
    "RULES",
    "Attr",
    "Cast",
    "Interval",
    "OpRule",
    "Trait",
    "build_lut",
    "cast_needed",
    "interval_of",
    "make_table",
    "registrar",
]
