"""Channel groups: values that share their last (channel) axis element for element.

Channels-last ops such as relu, quant, batchnorm, pooling or an elementwise add keep channel
``c`` of their operands in channel ``c`` of their result; all those values form one group,
and dropping a channel means dropping it from every value of the group at once. A group is
fed by *sources* (dense/conv whose output columns can go; graph inputs when ``keep-io=false``)
and read by *sinks* (dense/conv whose weight rows can go). Per-channel constants of the
member ops (batchnorm scale, prelu alphas, depthwise kernels, a bias added with ``add``) are
*params*, sliced alongside (a depthwise convolution with a depth multiplier above 1 freezes). Any
other use (softmax, a reshape that moves the channel axis, a graph output when the I/O must
stay) *freezes* the group: its channels stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait

from ._consts import is_const


@dataclass(eq=False)
class Group:
    """Values sharing one channel axis, and the ops that feed, read or slice it."""

    values: list[Value] = field(default_factory=list)
    """Member values (every one has ``size`` channels on its last axis)."""
    sources: list[Op] = field(default_factory=list)
    """dense/conv ops (or inputs) producing a member: their output channels can go."""
    sinks: list[Op] = field(default_factory=list)
    """dense/conv ops reading a member as ``x``: their weight rows for a channel can go."""
    params: list[tuple[Op, int]] = field(default_factory=list)
    """``(op, operand index)`` of per-channel constants of member ops, sliced with the group."""
    outputs: list[Op] = field(default_factory=list)
    """Graph outputs reading a member (only when the I/O shapes may change)."""
    luts: list[Op] = field(default_factory=list)
    """lut ops reading a member: their tables cover the member's union type, which must stay."""
    frozen: str = ""
    """Why the channels must stay ("" when they may go)."""

    @property
    def size(self) -> int:
        return self.values[0].shape[-1]


class _Groups:
    """Union-find over values plus the role bookkeeping."""

    def __init__(self) -> None:
        self.parent: dict[Value, Value] = {}
        self.notes: dict[Value, Group] = {}

    def find(self, v: Value) -> Value:
        self.parent.setdefault(v, v)
        while self.parent[v] is not v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: Value, b: Value) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[ra] = rb

    def note(self, v: Value) -> Group:
        return self.notes.setdefault(v, Group())


_PER_CHANNEL_CONSTS = (OpKind.BATCHNORM, OpKind.PRELU, OpKind.DEPTHWISE_CONV1D, OpKind.DEPTHWISE_CONV2D)
"""Channelwise ops whose constants (scale, offset, alphas, depthwise kernels and biases) hold one
entry per channel on their last axis: sliced with the channels."""


def _channelwise(op: Op, gs: _Groups) -> None:
    """Union the channel-sharing operands with the result; record params or freeze."""
    res = op.result
    size = res.shape[-1] if res.shape else -1
    shared = [0] if Trait.CHANNELWISE in op.rule.traits else range(len(op.operands))
    if op.kind is OpKind.LUT:
        gs.note(res).luts.append(op)
    for n, v in enumerate(op.operands):
        if op.kind is OpKind.LUT and n == 1:
            continue  # the table
        if is_const(v) and (op.kind in _PER_CHANNEL_CONSTS or n in shared):
            if v.shape and v.shape[-1] == size and size > 1:
                gs.note(res).params.append((op, n))
            continue  # broadcast constants stay as they are
        if n in shared and v.shape and v.shape[-1] == size and size >= 1:
            gs.union(v, res)
        else:
            gs.note(v).frozen = gs.note(res).frozen = f"{op.kind.value} %{res.name} broadcasts across channels"
    if op.kind is OpKind.CONCAT and op.attrs["axis"] == len(res.shape) - 1:
        for v in op.operands:
            gs.note(v).frozen = f"concat %{res.name} joins along the channel axis"
        gs.note(res).frozen = "made by a concat along the channel axis"


def _keeps_channel_axis(op: Op) -> bool:
    x, y = op.operands[0].shape, op.result.shape
    if op.kind is OpKind.TRANSPOSE:
        return bool(x) and op.attrs["perm"][-1] == len(x) - 1
    return bool(x) and bool(y) and x[-1] == y[-1]


def _classify(op: Op, gs: _Groups, keep_io: bool) -> None:
    kind = op.kind
    if kind is OpKind.CONST:
        return
    traits = op.rule.traits
    if Trait.CONTRACTS in traits:
        gs.note(op.operands[0]).sinks.append(op)
        gs.note(op.result).sources.append(op)
    elif traits & (Trait.CHANNELWISE | Trait.MERGES):
        _channelwise(op, gs)
    elif kind in (OpKind.RESHAPE, OpKind.TRANSPOSE) and _keeps_channel_axis(op):
        gs.union(op.operands[0], op.result)
    elif kind is OpKind.INPUT:
        if keep_io:
            gs.note(op.result).frozen = "a graph input (keep-io=true)"
        else:
            gs.note(op.result).sources.append(op)
    elif kind is OpKind.OUTPUT:
        if keep_io:
            gs.note(op.operands[0]).frozen = "a graph output (keep-io=true)"
        else:
            gs.note(op.operands[0]).outputs.append(op)
    else:
        for v in (*op.operands, *op.results):
            gs.note(v).frozen = f"{kind.value} %{op.operands[0].name} uses the channel axis"


def channel_groups(g: Graph, keep_io: bool = True) -> list[Group]:
    """Every channel group of ``g`` (constants belong to none)."""
    gs = _Groups()
    for op in g.ops:
        _classify(op, gs, keep_io)
    merged: dict[Value, Group] = {}
    for v in g.values():
        if is_const(v):
            continue
        root = gs.find(v)
        grp = merged.setdefault(root, Group())
        grp.values.append(v)
        part = gs.notes.get(v)
        if part is not None:
            grp.sources += part.sources
            grp.sinks += part.sinks
            grp.params += part.params
            grp.outputs += part.outputs
            grp.luts += part.luts
            grp.frozen = grp.frozen or part.frozen
    for grp in merged.values():
        if any(not v.shape or v.shape[-1] != grp.values[0].shape[-1] for v in grp.values):
            grp.frozen = grp.frozen or "its values disagree on the channel count"
    return list(merged.values())
