"""``infer-bitwidth``: the minimal exact type of every intermediate value, and why.

Per-element interval arithmetic (:mod:`hgqir.passes.intervals`) runs from the declared input
types and the constants' values through every op. Each computed value (accumulators
included) then gets the smallest type that holds every value it can take, so no input of the
declared input types can make it overflow, and ``g.run`` stays bit-identical:

* ``input`` and ``quant`` results keep their types: they are decisions, not intermediates.
  Their input chains are narrowed like everything else.
* Where a declared type is narrower than its exact range, its wrap-around is part of the
  graph's meaning: those elements keep their sign and integer bits (only ``f`` may shrink).
* Values read by ``lut`` / ``softmax`` keep their types (the tables are indexed over them).
* Constants shrink to the minimal type of their values (option ``consts``; tables excepted).

With ``calibration`` (a ``.npy``/``.npz`` file of inputs) the observed ranges replace the
static ones: the pass is then lossy (inputs outside those ranges may wrap) and says so.

>>> import hgqir
>>> g = hgqir.loads('''hgqir 1 @m
... %x = input {round = TRN, overflow = WRAP} : [2] <0,2,1>
... %y = relu %x : [2] <1,9,6>
... output %y {name = "out"}
... ''')
>>> report = infer_bitwidth(g)
>>> hgqir.dumps(g).splitlines()[2]
'%y = relu %x : [2] <0,2,1>'
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait

from ._consts import atomic, mantissas, minimal_const
from .base import Pass, register
from .calibration import load_calibration, observe
from .explain import BitwidthReport, Reason, describe
from .intervals import Facts, Observed, analyze

_DECISIONS = {
    OpKind.INPUT: "the declared input type is the interface",
    OpKind.QUANT: "an explicit quantization is a decision",
}


def narrowed(facts: Facts, t: FixedType) -> FixedType:
    """Smallest type giving the same values as ``t`` on the value's range ``facts.post``.

    Where the cast into ``t`` may wrap, ``facts.post`` is ``t``'s whole range (at the exact
    LSB), so those elements keep ``t``'s sign and integer bits: the wrap stays as it was.
    """
    p = facts.post
    zero = t.zero_mask | ((p.lo == 0) & (p.hi == 0))
    cover = FixedType.covering(np.where(zero, 0.0, p.lo), np.where(zero, 0.0, p.hi), np.where(zero, 0, p.f))
    keep = facts.unsure
    k, i, f = (np.where(keep, getattr(t, n), getattr(cover, n)) for n in "kif")
    return FixedType(t.shape, k, i, f).canonical()


def _pinned(v: Value) -> str:
    for user in v.users:
        if Trait.READS_TABLE in user.rule.traits and user.operands[0] is v:
            return f"read by {user.kind.value} %{user.result.name}: its table is indexed over this type"
    return ""


def _is_table(v: Value) -> bool:
    return any(Trait.READS_TABLE in u.rule.traits and u.operands[0] is not v for u in v.users)


def _plan_value(op: Op, facts: dict[Value, Facts], consts: bool, calibrated: bool) -> tuple[FixedType, Any, str]:
    """New type, new const data (or None) and the reason for one op's result."""
    v = op.result
    if op.kind in _DECISIONS:
        return v.type, None, f"kept: {_DECISIONS[op.kind]}"
    if op.kind is OpKind.CONST:
        if not consts or _is_table(v):
            return v.type, None, "kept: " + ("a lookup table" if consts else "option consts=false")
        data, t = minimal_const(*mantissas(v))
        return t, data, "minimal type of the constant's values (trailing zero bits dropped)"
    pin = _pinned(v)
    if pin:
        return v.type, None, f"kept: {pin}"
    ins = [facts[u].post for u in op.operands]
    return narrowed(facts[v], v.type), None, describe(op, facts[v], ins, calibrated)


def infer_bitwidth(
    g: Graph, calibration: np.ndarray | Sequence[np.ndarray] | None = None, consts: bool = True
) -> BitwidthReport:
    """Give every intermediate of ``g`` its minimal exact type; returns why each width was chosen.

    ``calibration`` (one array per graph input, batch first) switches to observed ranges:
    the result is then exact only on that data (lossy).
    """
    observed: Observed | None = None
    if calibration is not None:
        observed = observe(g, calibration)
        warnings.warn(
            "infer-bitwidth with calibration data is lossy: inputs outside the observed ranges may wrap", stacklevel=2
        )
    facts = analyze(g, observed)
    plan: list[tuple[Value, FixedType, Any, str]] = []
    for op in g.ops:
        if op.kind is not OpKind.OUTPUT:
            t, data, why = _plan_value(op, facts, consts, observed is not None)
            plan.append((op.result, t, data, why))
    report = BitwidthReport(lossy=observed is not None)
    with atomic(g, "infer-bitwidth"):
        _apply(plan, report)
    return report


def _apply(plan: list[tuple[Value, FixedType, Any, str]], report: BitwidthReport) -> None:
    for v, t, data, why in plan:  # everything decided: now mutate
        report.reasons[v.name] = Reason(v.name, v.producer.kind.value, v.type, t, why)  # type: ignore[union-attr]
        if data is not None:
            op = v.producer
            op.attrs["data"] = op.rule.attrs["data"].normalize("data", data)  # type: ignore[union-attr]
        v.type = t


@register
@dataclass(frozen=True)
class InferBitwidth(Pass):
    """Minimal exact per-element types for every intermediate (see the module docstring)."""

    name: ClassVar[str] = "infer-bitwidth"
    consts: bool = True
    """Also shrink constants to the minimal type of their values (lookup tables excepted)."""
    calibration: str = ""
    """A ``.npy`` (one input) or ``.npz`` (by input name) file: use observed ranges (lossy)."""

    @property
    def lossy(self) -> bool:  # type: ignore[override]
        """Lossy exactly when calibration data decides the ranges."""
        return bool(self.calibration)

    def apply(self, g: Graph) -> BitwidthReport:
        data = load_calibration(self.calibration, g) if self.calibration else None
        return infer_bitwidth(g, calibration=data, consts=self.consts)
