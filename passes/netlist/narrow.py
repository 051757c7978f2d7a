"""Demanded bits: keep only the low bits of each wire that some reader can observe.

Bit ``k`` of a sum, difference, negation or product depends only on bits ``0..k`` of its
operands, so when every reader of a node looks at no more than its low ``D`` bits (a WRAP
quantizer keeps ``k + i`` bits, a rounding shift by ``r`` looks at ``r + D``, an output port at
its own width), the node and, through it, its operands need only ``D`` bits. Comparators, relu,
ROM selects and sign-dependent rounding read the sign and keep their operands whole. The
values the kept bits carry are exact; the bits above them are simply never computed.
"""

from __future__ import annotations

from .netlist import Netlist, Ref

FULL = 1 << 30


def demanded(net: Netlist, outputs: list[tuple[Ref, int]]) -> list[int]:
    """Bits to keep per node, given the output refs and the bits each output port reads of them.

    ``outputs``: ``(ref, bits)`` where ``bits`` counts from the node's LSB (the port width plus
    the port's own shift below the node's LSB is already accounted for by the caller).
    """
    need = [0] * len(net)
    for r, bits in outputs:
        need[r.node] = max(need[r.node], bits)
    for n in reversed(topological(net, [r for r, _ in outputs])):
        d = min(need[n], net.width(n))
        need[n] = d
        if d <= 0:
            continue
        kind, args, p = net.kind[n], net.args[n], net.param[n]
        if kind == "add":
            wants = [d - p[0], d - p[1]]
        elif kind in ("neg", "wrap", "reg", "mul"):
            wants = [d] * len(args)
        elif kind == "shr" and p[1] in ("TRN", "RND", "RND_MIN_INF", "RND_CONV"):
            wants = [p[0] + d]
        else:  # comparators, relu, ROM selects, sign-dependent rounding: the whole operand
            wants = [FULL] * len(args)
        for a, w in zip(args, wants, strict=True):
            if w > 0:
                need[a.node] = max(need[a.node], w)
    return [min(need[n], net.width(n)) for n in range(len(net))]


def topological(net: Netlist, roots: list[Ref]) -> list[int]:
    """Nodes reachable from ``roots``, every node after its operands (pipelining appends registers
    after their readers, so index order is not enough)."""
    seen = [False] * len(net)
    order: list[int] = []
    for root in roots:
        if seen[root.node]:
            continue
        stack = [(root.node, False)]
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
                continue
            if seen[n]:
                continue
            seen[n] = True
            stack.append((n, True))
            stack.extend((a.node, False) for a in net.args[n] if not seen[a.node])
    return order


def narrow(net: Netlist, outputs: list[tuple[Ref, int]]) -> None:
    """Make every node of ``net`` only as wide as its demanded bits (:attr:`Netlist.kept`)."""
    net.kept = demanded(net, outputs)
