"""Hardware cost model: LUT, FF, CARRY and DSP per layer, predicted from the element netlist.

Each primitive contributes *features* (bits of carry chains, comparator bits, multiplexer bits,
ROM output bits, multiplier bit products, register bits); a layer's LUT count is a linear
combination of its features with non-negative coefficients fitted to Yosys ``synth_xilinx``
results (``benchmarks/synth.py --calibrate`` writes ``cost_model.json`` beside this file).
Carry cells are one per 4 chain bits, flip-flops are the register bits, DSPs one per
multiplier of two variables (when DSPs are enabled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .netlist import Netlist, Ref
from .pipeline import live_nodes

MODEL_FILE = Path(__file__).with_name("cost_model.json")
FEATURES = ("chain", "sext", "zext", "const_chain", "round", "sat", "maxmin", "relu", "rom", "mul", "node")
"""Feature names (see :func:`features`)."""
DEFAULT_COEF = {
    "chain": 1.0,
    "sext": 1.0,
    "zext": 0.1,
    "const_chain": 1.0,
    "round": 0.2,
    "sat": 0.3,
    "maxmin": 0.6,
    "relu": 1.0,
    "rom": 1.0,
    "mul": 1.0,
    "node": 0.0,
}
"""Used until a calibration exists: one LUT per chain bit and per multiplexed bit."""


@dataclass
class LayerCost:
    name: str
    features: dict[str, float] = field(default_factory=dict)
    lut: float = 0.0
    ff: float = 0.0
    carry: float = 0.0
    dsp: float = 0.0


def coefficients() -> dict[str, float]:
    """The fitted LUT coefficients (defaults when no calibration file exists)."""
    if MODEL_FILE.exists():
        return {**DEFAULT_COEF, **json.loads(MODEL_FILE.read_text())["lut"]}
    return dict(DEFAULT_COEF)


DEFAULT_LUT_PER_EBOP = 0.5


def lut_per_ebop() -> float:
    """LUTs per EBOP of whole designs (fitted with the coefficients; what ``ShimConfig(resource="lut")`` uses)."""
    if MODEL_FILE.exists():
        return float(json.loads(MODEL_FILE.read_text()).get("lut_per_ebop", {}).get("factor", DEFAULT_LUT_PER_EBOP))
    return DEFAULT_LUT_PER_EBOP


def _chain(net: Netlist, n: int) -> dict[str, int]:
    """Carry-chain features of one node (bits that go through a carry chain).

    An adder's bits below its operands' larger shift are wires; above it, ``chain`` counts the
    bits where both operands have bits, ``sext`` / ``zext`` the bits above the narrower operand
    when it is sign- / zero-extended (a zero-extended operand leaves only the carry to propagate).
    """
    kind, p, args = net.kind[n], net.param[n], net.args[n]
    w = net.width(n)
    if kind == "add":
        low = max(p[0], p[1])
        if any(net.kind[a.node] == "const" for a in args):
            return {"const_chain": max(w - low, 1)}
        tops = [s + net.width(a.node) for s, a in zip(p[:2], args, strict=True)]
        narrow = args[tops.index(min(tops))].node
        both = min(max(min(tops), low + 1), w) - low
        rest = max(w - low - both, 0)
        return {"chain": max(both, 1), "sext" if net.signed(narrow) else "zext": rest}
    if kind == "neg":
        return {"chain": w}
    if kind == "shr" and p[1] != "TRN":
        return {"round": w + 1}
    return {}


def features(net: Netlist, n: int, dsp: bool) -> dict[str, float]:
    """The cost features of node ``n``."""
    kind = net.kind[n]
    w = net.width(n)
    out: dict[str, float] = {}
    chain = _chain(net, n)
    if chain:
        out.update(chain)
        out["carry"] = -(-sum(chain.values()) // 4)
    elif kind in ("clip", "zclip"):
        src = net.args[n][0].node
        t = max(net.width(src) + net.param[n][0], w) + 1
        checks = (net.lo[src] << net.param[n][0] < net.param[n][1]) + (net.hi[src] << net.param[n][0] > net.param[n][2])
        out.update(sat=t * checks + w, carry=checks * -(-t // 4))
    elif kind in ("max", "min"):
        t = max(net.width(a.node) for a in net.args[n]) + max(net.param[n]) + 1
        out.update(maxmin=t + w, carry=-(-t // 4))
    elif kind == "relu":
        out["relu"] = w
    elif kind == "rom":
        sel = net.width(net.args[n][0].node)
        out["rom"] = w * (1 << max(sel - 6, 0))
    elif kind == "mul":
        wa, wb = (net.width(a.node) for a in net.args[n])
        if dsp and min(wa, wb) > 1:
            out["dsp"] = -(-wa // 27) * -(-wb // 18)
        else:
            out["mul"] = wa * wb
    elif kind == "reg":
        out["ff"] = w
    if kind not in ("const", "input", "wrap", "reg"):
        out["node"] = 1
    return out


def estimate(net: Netlist, roots: list[Ref], dsp: bool = True, coef: dict[str, float] | None = None) -> list[LayerCost]:
    """Predicted cost of every layer (and ``(top)`` glue) of a lowered, optionally pipelined, netlist."""
    coef = coefficients() if coef is None else coef
    live = live_nodes(net, roots)
    layers = [LayerCost(info.name) for info in net.layers] + [LayerCost("(top)")]
    for n in range(len(net)):
        if not live[n]:
            continue
        cost = layers[net.layer[n]]
        for k, v in features(net, n, dsp).items():
            cost.features[k] = cost.features.get(k, 0.0) + v
    for cost in layers:
        f = cost.features
        cost.lut = sum(coef.get(k, 0.0) * f.get(k, 0.0) for k in FEATURES)
        cost.ff, cost.carry, cost.dsp = f.get("ff", 0.0), f.get("carry", 0.0), f.get("dsp", 0.0)
    return [c for c in layers if c.features]
