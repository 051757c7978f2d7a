"""What the Verilog templates render: modules, wires, statements and ports, as plain data.

Every wire is an unsigned bit vector of its node's exact width; operands are explicitly
sign- or zero-extended (or truncated) and shifted to the width of the statement that reads
them, so the arithmetic is modulo ``2**width`` and never depends on Verilog's sizing rules.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hgqir.passes.netlist.lower import Port
from hgqir.passes.netlist.netlist import Netlist, Ref, width_of
from hgqir.passes.netlist.pipeline import live_nodes


@dataclass
class Module:
    name: str
    comment: str
    kind: str
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    stmts: list[dict[str, Any]] = field(default_factory=list)
    clocked: bool = False


@dataclass
class Design:
    top: str
    modules: list[Module]
    glue: Module
    """The top module's own statements (input wiring, registers of the top layer)."""
    in_ports: list[dict[str, Any]]
    out_ports: list[dict[str, Any]]
    wires: list[dict[str, Any]]
    latency: int
    counts: dict[str, int]


def safe(name: str) -> str:
    return re.sub(r"\W", "_", name)


def operand(net: Netlist, r: Ref, width: int, shift: int = 0) -> dict[str, Any]:
    """Ref ``r`` shifted left by ``shift`` bits (right when negative) and extended / truncated to ``width`` bits."""
    n = r.node
    if net.kind[n] == "const" or n == 0:
        m = net.param[n][0]
        value = (m << shift if shift >= 0 else m >> -shift) % (1 << width)
        return {"const": True, "width": width, "hex": format(value, "x")}
    w = net.width(n)
    drop = max(-shift, 0)
    shift = max(shift, 0)
    if drop >= w:  # only sign (or zero) bits are left
        if not net.signed(n):
            return {"const": True, "width": width, "hex": "0"}
        drop = w - 1
    take = min(w - drop, width - shift)
    if take <= 0:
        return {"const": True, "width": width, "hex": "0"}
    return {
        "const": False,
        "name": f"n{n}",
        "w": w,
        "lo": drop,
        "take": take,
        "ext": width - shift - take,
        "signed": net.signed(n),
        "sh": shift,
    }


def _add(net: Netlist, n: int, st: dict[str, Any]) -> None:
    """An adder; when one operand is shifted by ``L`` bits, the low ``L`` bits of the sum are the
    other operand's (no carry can come out of them), so only the bits above go through the adder
    (synthesis does not find this by itself: the carry chain is a hard cell)."""
    (a, b), (sa, sb, sub), W = net.args[n], net.param[n], st["w"]
    L = max(sa, sb)
    if L == 0 or (sub and sa > sb):  # no shift, or ``(a << L) - b``: the low bits are ``-b``'s
        st.update(a=operand(net, a, W, sa), b=operand(net, b, W, sb), op="-" if sub else "+", low=0)
        return
    p, q = (b, a) if sa > sb else (a, b)
    L = min(L, W)
    st.update(low=L, low_bits=operand(net, p, L), op="-" if sub else "+")
    if L < W:
        ap, bq = operand(net, p, W - L, -L), operand(net, q, W - L)
        st.update(a=ap, b=bq) if p is a else st.update(a=bq, b=ap)


def statement(net: Netlist, n: int) -> dict[str, Any]:
    kind, args, p = net.kind[n], net.args[n], net.param[n]
    W = net.width(n)
    st: dict[str, Any] = {"kind": kind, "name": f"n{n}", "w": W}
    if kind == "add":
        _add(net, n, st)
    elif kind in ("neg", "wrap", "reg"):
        st.update(a=operand(net, args[0], W))
    elif kind == "shr":
        r, mode = p
        src = args[0].node
        w = net.width(src)
        T = max(w + 1, r + W)
        signed = net.signed(src)
        st.update(
            a=operand(net, args[0], T),
            t=T,
            r=r,
            mode=mode,
            half=1 << (r - 1),
            low=(1 << r) - 1,
            sign=f"n{src}[{w - 1}]" if signed else "1'b0",
            bit=f"n{src}[{r}]" if r < w else (f"n{src}[{w - 1}]" if signed else "1'b0"),
        )
    elif kind in ("clip", "zclip"):
        sh, lo, hi = p
        src = args[0].node
        T = max(net.width(src) + sh, width_of(lo, hi)) + 1
        s_lo, s_hi = net.lo[src] << sh, net.hi[src] << sh
        st.update(
            a=operand(net, args[0], T, sh),
            t=T,
            lo=_hexs(lo, T),
            hi=_hexs(hi, T),
            lo_w=_hexs(lo if kind == "clip" else 0, W),
            hi_w=_hexs(hi if kind == "clip" else 0, W),
            check_lo=s_lo < lo,
            check_hi=s_hi > hi,
        )
    elif kind == "relu":
        src = args[0].node
        st.update(a=operand(net, args[0], W), sign=f"n{src}[{net.width(src) - 1}]")
    elif kind in ("max", "min"):
        wa = net.width(args[0].node) + p[0] + (0 if net.signed(args[0].node) else 1)
        wb = net.width(args[1].node) + p[1] + (0 if net.signed(args[1].node) else 1)
        T = max(wa, wb, W) + 1
        st.update(
            a=operand(net, args[0], T, p[0]), b=operand(net, args[1], T, p[1]), t=T, cmp=">" if kind == "max" else "<"
        )
    elif kind == "mul":
        ws = [net.width(a.node) + (0 if net.signed(a.node) else 1) for a in args]
        st.update(a=operand(net, args[0], ws[0]), b=operand(net, args[1], ws[1]), wa=ws[0], wb=ws[1])
    elif kind == "rom":
        base, table = p
        src = args[0].node
        w = net.width(src)
        default, _ = Counter(table).most_common(1)[0]
        st.update(
            sel=f"n{src}",
            sw=w,
            default=_hexs(default, W),
            cases=[(format((base + j) % (1 << w), "x"), _hexs(v, W)) for j, v in enumerate(table) if v != default],
        )
    elif kind == "input":
        st.update(port=p)
    return st


def _hexs(v: int, width: int) -> str:
    """``v`` as a ``width``-bit two's complement sized hex literal."""
    return f"{width}'h{v % (1 << width):x}"


def _unique_tags(names: list[str]) -> list[str]:
    """Verilog-safe, distinct port prefixes for the graph's inputs and outputs."""
    seen: set[str] = set()
    out = []
    for name in names:
        tag = base = safe(name)
        n = 1
        while tag in seen:
            tag, n = f"{base}{n}", n + 1
        seen.add(tag)
        out.append(tag)
    return out


def design(net: Netlist, inputs: list[Port], outputs: list[Port], top: str, latency: int) -> Design:
    """Group the live nodes into one module per layer and wire them up in the top."""
    live = live_nodes(net, [r for p in outputs for r in p.refs])
    taken: set[str] = {top}
    modules = []
    for info in net.layers:
        base = safe(f"{top}_{info.name}")
        while base in taken:
            base += "_"
        taken.add(base)
        modules.append(Module(base, info.comment, info.kind))
    glue = Module(top, "top", "top")
    home = {-1: glue, **dict(enumerate(modules))}
    readers: dict[int, set[int]] = {}
    for n in range(len(net)):
        if not live[n] or net.kind[n] == "const":
            continue
        home[net.layer[n]].stmts.append(statement(net, n))
        if net.kind[n] == "reg":
            home[net.layer[n]].clocked = True
        for a in net.args[n]:
            if net.kind[a.node] != "const" and a.node:
                readers.setdefault(a.node, set()).add(net.layer[n])
    out_nodes = {r.node for p in outputs for r in p.refs}
    wires = []
    for n, who in sorted(readers.items()):
        src = net.layer[n]
        outside = who - {src}
        if src != -1 and (outside or n in out_nodes):
            home[src].outputs.append({"name": f"n{n}", "w": net.width(n)})
        for reader in sorted(outside - {-1}):
            home[reader].inputs.append({"name": f"n{n}", "w": net.width(n)})
        if outside or n in out_nodes:
            wires.append({"name": f"n{n}", "w": net.width(n), "top": src == -1})
    for n in out_nodes - set(readers):
        if n and net.kind[n] != "const" and net.layer[n] != -1:
            home[net.layer[n]].outputs.append({"name": f"n{n}", "w": net.width(n)})
            wires.append({"name": f"n{n}", "w": net.width(n), "top": False})
    tags = _unique_tags([p.name for p in inputs] + [p.name for p in outputs])
    in_tags, out_tags = tags[: len(inputs)], tags[len(inputs) :]
    in_ports = []
    for tag, p in zip(in_tags, inputs, strict=True):
        k, i, f = p.kif
        for j, w in enumerate(p.widths):
            if w > 0:
                kif = [int(k[j]), int(i[j]), int(f[j])]
                in_ports.append({"name": f"i_{tag}_{j}", "w": w, "tensor": p.name, "index": j, "kif": kif})
    out_ports = []
    for tag, p in zip(out_tags, outputs, strict=True):
        k, i, f = p.kif
        for j, (w, ref) in enumerate(zip(p.widths, p.refs, strict=True)):
            if w > 0:
                conn = operand(net, ref, w, net.exp(ref) + int(f[j]))
                kif = [int(k[j]), int(i[j]), int(f[j])]
                out_ports.append({"name": f"o_{tag}_{j}", "w": w, "tensor": p.name, "index": j, "kif": kif, "a": conn})
    used = [m for m in modules if m.stmts]
    counts = Counter(net.kind[n] for n in range(len(net)) if live[n])
    return Design(top, used, glue, in_ports, out_ports, wires, latency, dict(counts))
