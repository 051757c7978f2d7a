"""The op rule table: one :class:`~hgqir.ops.base.OpRule` per :class:`~hgqir.ir.OpKind`."""

from __future__ import annotations

from . import core, elementwise, linear, pool, shape, table  # noqa: F401  (registration)
from .base import RULES, Attr, Interval, OpRule, interval_of
from .table import build_lut, make_table

__all__ = ["RULES", "Attr", "Interval", "OpRule", "interval_of", "build_lut", "make_table"]
