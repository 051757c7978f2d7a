"""Dead-node removal and pipelining of the element netlist.

Each node gets an estimated delay (in adder levels); nodes are scheduled as soon as possible
into stages of at most ``budget`` levels, and every value that crosses a stage boundary gets a
register (one chain per value, shared by all its readers). Outputs are registered at the end,
so a pipelined design has ``latency = stages`` cycles and takes one new sample per clock.
"""

from __future__ import annotations

from .netlist import Netlist, Ref

DELAY = {
    "add": 1.0,
    "neg": 1.0,
    "shr": 1.0,
    "clip": 1.0,
    "zclip": 1.0,
    "max": 1.0,
    "min": 1.0,
    "relu": 0.25,
    "mul": 2.0,
    "rom": 1.0,
}
"""Estimated delay of each primitive in adder levels (wiring-only kinds cost nothing)."""
AUTO_BUDGET = 5.0
"""Levels per stage for ``pipeline="auto"``."""


def delay(net: Netlist, n: int) -> float:
    kind = net.kind[n]
    if kind == "shr" and net.param[n][1] == "TRN":
        return 0.0
    return DELAY.get(kind, 0.0)


def live_nodes(net: Netlist, roots: list[Ref]) -> list[bool]:
    """Which nodes some output depends on."""
    live = [False] * len(net)
    stack = [r.node for r in roots]
    while stack:
        n = stack.pop()
        if live[n]:
            continue
        live[n] = True
        stack.extend(a.node for a in net.args[n])
    return live


def schedule(net: Netlist, live: list[bool], budget: float) -> list[int]:
    """Stage of every node: as soon as possible, a new stage when the budget would be exceeded."""
    stage = [0] * len(net)
    time = [0.0] * len(net)
    for n in range(len(net)):
        if not live[n] or not net.args[n]:
            continue
        s = max(stage[a.node] for a in net.args[n] if net.kind[a.node] != "const") if _vars(net, n) else 0
        t = max((time[a.node] for a in net.args[n] if stage[a.node] == s and net.kind[a.node] != "const"), default=0.0)
        d = delay(net, n)
        if t > 0 and t + d > budget:
            s, t = s + 1, 0.0
        stage[n], time[n] = s, t + d
    return stage


def _vars(net: Netlist, n: int) -> bool:
    return any(net.kind[a.node] != "const" for a in net.args[n])


def pipeline(net: Netlist, outputs: list[list[Ref]], budget: float) -> tuple[list[list[Ref]], int]:
    """Insert the registers; returns the outputs' refs (now registered) and the latency in cycles."""
    live = live_nodes(net, [r for refs in outputs for r in refs])
    size = len(net)
    stage = schedule(net, live, budget)
    last = max((stage[n] for n in range(size) if live[n]), default=0)
    chains: dict[int, list[Ref]] = {}

    def delayed(r: Ref, s: int) -> Ref:
        """``r`` as seen from stage ``s`` (registered once per boundary it crosses)."""
        n = r.node
        if net.kind[n] == "const" or n == 0:
            return r
        chain = chains.setdefault(n, [Ref(n)])
        while len(chain) <= s - stage[n]:
            prev = chain[-1]
            net.current = net.layer[n]
            reg = net.new("reg", (prev,), (), net.e[n], net.lo[n], net.hi[n])
            chain.append(reg)
        return chain[s - stage[n]]._replace(dp=r.dp, neg=r.neg)

    for n in range(size):
        if live[n] and net.args[n]:
            net.args[n] = tuple(delayed(a, stage[n]) for a in net.args[n])
    outs = [[delayed(r, last + 1) for r in refs] for refs in outputs]
    return outs, last + 1
