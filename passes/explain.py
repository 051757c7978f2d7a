"""Why ``infer-bitwidth`` chose each width: reasons per value and the pass's report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hgqir.fixed import FixedType, summary
from hgqir.ir import Op, OpKind
from hgqir.ops.base import PAD_F, Interval

from .intervals import Facts


@dataclass
class Reason:
    """The width decision for one value."""

    value: str
    """Name of the value (without ``%``)."""
    kind: str
    """Kind of the op that produces it."""
    before: FixedType
    """Declared type before the pass."""
    after: FixedType
    """Type after the pass."""
    why: str
    """Human explanation: the range and LSB that set the width, or why the type was kept."""

    def text(self) -> str:
        head = f"%{self.value} = {self.kind}: {summary(self.before)}  ->  {summary(self.after)}"
        bits = f"  bits {int(self.before.bits.sum())} -> {int(self.after.bits.sum())}"
        return head + "\n" + bits + "\n" + "\n".join(f"  {line}" for line in self.why.split("\n"))


@dataclass
class BitwidthReport:
    """What ``infer-bitwidth`` returns: a :class:`Reason` per value name."""

    reasons: dict[str, Reason] = field(default_factory=dict)
    """Reason per value name, in graph order."""
    lossy: bool = False
    """True when calibration data (observed ranges) decided the widths."""

    def explain(self, value: str) -> str:
        """Why ``value`` (``"name"`` or ``"%name"``) got its type."""
        name = value.lstrip("%")
        if name not in self.reasons:
            known = ", ".join(f"%{n}" for n in list(self.reasons)[:20])
            raise KeyError(f"no value %{name} was typed by infer-bitwidth; known: {known}")
        return self.reasons[name].text()

    def bits(self) -> tuple[int, int]:
        """Total bits over every value, before and after."""
        before = sum(int(r.before.bits.sum()) for r in self.reasons.values())
        after = sum(int(r.after.bits.sum()) for r in self.reasons.values())
        return before, after

    def table(self) -> str:
        """One line per value whose type changed, and the totals."""
        lines = [f"{'value':<20} {'op':<10} {'before':<28} after"]
        for r in self.reasons.values():
            if r.before != r.after:
                lines.append(f"%{r.value:<19} {r.kind:<10} {summary(r.before):<28} {summary(r.after)}")
        before, after = self.bits()
        lines.append(f"total bits {before} -> {after}" + ("  (lossy: calibrated ranges)" if self.lossy else ""))
        return "\n".join(lines)


def _num(x: float) -> str:
    return repr(float(x))


def _widest(facts: Facts) -> tuple[int, ...]:
    p = facts.post
    live = p.f > PAD_F // 2
    with np.errstate(over="ignore", divide="ignore"):
        mag = np.where(live, np.log2(np.maximum(np.abs(p.lo), np.abs(p.hi)) + 1e-300) + p.f, -np.inf)
    return tuple(int(a) for a in np.unravel_index(int(np.argmax(mag)), np.shape(mag))) if mag.size else ()


def _lsb_source(op: Op, ins: list[Interval], idx: tuple[int, ...]) -> str:
    """For dense: which input and weight set the LSB of element ``idx``."""
    if op.kind is not OpKind.DENSE or not idx:
        return ""
    x, w = ins[0], ins[1]
    fx = np.broadcast_to(x.f, op.operands[0].shape)[idx[:-1]]
    cand = fx + w.f[:, idx[-1]]
    j = int(np.argmax(cand))
    if cand[j] <= PAD_F // 2:
        return ""
    return f"\nLSB 2^-{int(cand[j])} = x[..., {j}] (2^-{int(fx[j])}) * w[{j}, {idx[-1]}] (2^-{int(w.f[j, idx[-1]])})"


def describe(op: Op, facts: Facts, ins: list[Interval], calibrated: bool) -> str:
    """Explanation of a computed value's new type."""
    t = op.result.type
    p = facts.post
    live = ~t.zero_mask
    zero = (p.lo == 0) & (p.hi == 0)
    if not (live & ~zero).any():
        return f"every element is always 0 (exact {op.kind.value} result): pruned"
    idx = _widest(facts)
    lines = [
        f"exact {op.kind.value} result; widest element {list(idx)}: range "
        f"[{_num(p.lo[idx])}, {_num(p.hi[idx])}] on a 2^-{int(p.f[idx])} grid" + _lsb_source(op, ins, idx)
    ]
    wraps = ~facts.fits & live & ~zero & ~facts.unsure
    if wraps.any() and not calibrated:
        lines.append(
            f"{int(wraps.sum())} element(s) may wrap in the declared type: their k and i are kept "
            "(the wrap is part of the graph's meaning)"
        )
    trunc = (np.broadcast_to(facts.exact.f, t.shape) > t.f) & live & ~zero
    if trunc.any():
        lines.append(f"{int(trunc.sum())} element(s) truncate to their declared LSB, which is kept")
    if facts.unsure.any():
        lines.append(f"{int(facts.unsure.sum())} element(s) wider than the exact analysis allows keep their type")
    if (zero & live).any():
        lines.append(f"{int((zero & live).sum())} element(s) are always 0: pruned")
    if calibrated:
        lines.append("ranges observed on calibration data (lossy: other inputs may wrap)")
    return "\n".join(lines)
