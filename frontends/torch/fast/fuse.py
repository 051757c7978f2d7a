"""The fused training graph of a shim: its body with runs of layers as single kernel calls.

In a training step on the C++ kernels the unfused body still makes a dozen small calls per
layer (bank outputs, weight cast, linear or conv, ReLU, activation quantizer) and as many
autograd nodes. :func:`fused_graph` rewrites the body's graph once so that each

    linear | conv  [-> relu]  [-> activation quantizer]

with its weight and bias casts and the quantizer of its input when only this layer reads it, is
one layer (:class:`~.plan.ChainLayer`) of a ``torch.ops.hgqir.chain`` call that reads the flat
``f`` and ranges of the bank directly; the remaining activation quantizers become weightless
layers. Layers that feed only the next one merge into one call (one autograd node): an MLP
trains on a single call each way. Values, ranges and gradients are those of the unfused path
(the kernel calls ATen's own linear, convolution and their backward).

The rewrite applies only when every bank output is consumed by such a chain or quantizer (plain
WRAP quantizers and per-element weights: :attr:`QuantBank.simple_layout`); otherwise (table,
softmax or pooling quantizers, quantized constants of ``+ - *``, linear layers on inputs of rank
above 2) the shim trains on :mod:`.kernel_body`. Besides each chain's static plan the graph holds
no tensors: the chains read their parameters from their modules on every call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor

from ..shim.quant import decay_factor
from ..shim.quantizers import ActQuantizer
from .access import Slot, slot
from .plan import ChainLayer, LayerKind, TrainRound
from .step import BankSlots, ChainCall, StepCost

if TYPE_CHECKING:
    from ..shim.module import QuantizedModule

_LAYERS = {F.linear: LayerKind.LINEAR, F.conv1d: LayerKind.CONV, F.conv2d: LayerKind.CONV}

CostFactory = Callable[[Tensor], StepCost]
"""Makes the :class:`StepCost` of the last chain from that chain's plan."""


def bank_slots(qmod: QuantizedModule) -> BankSlots:
    """Where the shim's bank keeps ``f``, ``vmax`` and ``vmin``."""
    bank = qmod.bank
    return slot(bank, "f"), slot(bank, "vmax"), slot(bank, "vmin")


def group_index(qmod: QuantizedModule, spec: int) -> Tensor | None:
    """Group of each element of one sample of an activation spec (None: one group per element)."""
    s = qmod.bank.specs[spec]
    return None if s.group == s.shape else torch.from_numpy(s.group_index().copy())


def plain_quantizer(module: Any) -> bool:
    """An activation quantizer the kernels run (range-following, no table or pooling)."""
    return type(module) is ActQuantizer and not module.learns_i


def _pending(x: Tensor) -> Tensor:
    """Target of a chain node before the chains are merged (never called)."""
    raise AssertionError("an unmerged chain node was called")


class _Rewrite:
    def __init__(self, qmod: QuantizedModule, make_cost: CostFactory) -> None:
        self.qmod, self.bank = qmod, qmod.bank
        self.make_cost = make_cost
        self.bank_slots = bank_slots(qmod)
        self.decay = decay_factor(qmod.config.i_decay)
        self.graph = qmod.body.graph
        self.bank_node = next(n for n in self.graph.nodes if n.op == "call_module" and n.target == "hgq")
        self.items: dict[fx.Node, tuple[int, int]] = {}
        for n in self.graph.nodes:
            if n.op == "call_function" and n.target is operator.getitem and n.args[0] is self.bank_node:
                self.items[n] = divmod(int(n.args[1]), 4)  # type: ignore[arg-type]
        self.param_of = dict(zip(self.bank.param_specs, self.bank_node.args, strict=True))
        self.f_off, self.r_off = self.bank.f_offsets, self.bank.range_offsets
        self.new = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}
        self.deferred: set[fx.Node] = set()
        """Quantizers left to the layer that reads them (see :meth:`feeds_layer`)."""
        self.pending: dict[fx.Node, tuple[list[Slot], list[ChainLayer]]] = {}
        """Weights and layers of each chain node, until the chains are merged."""

    # ------------------------------------------------------------------ helpers
    def param(self, node: Any) -> tuple[int, Slot] | None:
        """Spec and slot of a bank output that is a quantized weight or bias."""
        if node not in self.items:
            return None
        spec, item = self.items[node]
        if item != 0 or spec not in self.param_of:
            return None
        path, _, name = str(self.param_of[spec].target).rpartition(".")
        return spec, slot(self.qmod.body.get_submodule(path), name)

    def quantizer(self, node: fx.Node, x: fx.Node) -> int | None:
        """Spec of a plain activation quantizer called on ``x`` with its own bank outputs."""
        if node.op != "call_module" or node.args[0] is not x or len(node.args) != 4:
            return None
        if not plain_quantizer(self.qmod.body.get_submodule(str(node.target))):
            return None
        got = [self.items.get(a) for a in node.args[1:]]  # type: ignore[call-overload]
        if any(g is None for g in got):
            return None
        spec = got[0][0]  # type: ignore[index]
        return spec if got == [(spec, 0), (spec, 2), (spec, 3)] else None

    @staticmethod
    def sole_user(node: fx.Node) -> fx.Node | None:
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def emit(self, x: fx.Node, slots: list[Slot], layer: ChainLayer) -> fx.Node:
        node = self.new.call_function(_pending, (self.env[x],))
        self.pending[node] = (slots, [layer])
        return node

    def act_part(self, qnode: fx.Node | None) -> tuple[int, int, int, TrainRound, Tensor | None]:
        """``f`` offset, range offset, groups, rounding and group index of a quantizer node."""
        if qnode is None:
            return -1, 0, 0, TrainRound.NEAREST, None
        spec = self.quantizer(qnode, qnode.args[0])  # type: ignore[arg-type]
        assert spec is not None
        s = self.bank.specs[spec]
        return (
            self.f_off[spec],
            self.r_off[spec],
            s.group_size,
            TrainRound.of(s.config.round),
            group_index(self.qmod, spec),
        )

    # ------------------------------------------------------------------ rewrite
    def weights(self, node: fx.Node) -> tuple[LayerKind, tuple[int, Slot], tuple[int, Slot] | None] | None:
        """Kind, weight and bias of a linear / conv node that fuses (None: it does not)."""
        kind = _LAYERS.get(node.target) if node.op == "call_function" else None  # type: ignore[call-overload]
        if kind is None or node.kwargs:
            return None
        x, w, b = node.args[:3]
        pw = self.param(w)
        pb = self.param(b) if b is not None else None
        if pw is None or (b is not None and pb is None) or not isinstance(x, fx.Node):
            return None
        if kind is LayerKind.LINEAR and len(self.qmod.plan.records[x.name].shape) != 1:
            return None
        return kind, pw, pb

    def feeds_layer(self, node: fx.Node) -> bool:
        """A quantizer whose only reader is a fusing layer: it is quantized inside that layer."""
        user = self.sole_user(node)
        return user is not None and user.args[0] is node and self.weights(user) is not None

    def layer(self, node: fx.Node) -> list[fx.Node] | None:
        """Fuse the chain starting at a linear / conv node; the nodes it covers (None: can't)."""
        found = self.weights(node)
        if found is None:
            return None
        kind, pw, pb = found
        x = node.args[0]
        assert isinstance(x, fx.Node)
        pre = x if x in self.deferred else None
        chain, relu, qnode = [node], False, None
        nxt = self.sole_user(node)
        if nxt is not None and nxt.op == "call_function" and nxt.target is torch.relu:
            chain.append(nxt)
            relu = True
            nxt = self.sole_user(nxt)
        if nxt is not None and self.quantizer(nxt, chain[-1]) is not None:
            chain.append(nxt)
            qnode = nxt
        specs = self.bank.specs
        stride, pad = (tuple(node.args[3]), tuple(node.args[4])) if kind is LayerKind.CONV else ((), ())  # type: ignore[arg-type]
        a_off, r_off, groups, amode, gidx = self.act_part(qnode)
        i_off, i_roff, i_groups, imode, in_gidx = self.act_part(pre)
        layer = ChainLayer(
            kind,
            relu=relu,
            w_off=self.f_off[pw[0]],
            b_off=self.f_off[pb[0]] if pb else -1,
            wmode=TrainRound.of(specs[pw[0]].config.round),
            bmode=TrainRound.of(specs[pb[0]].config.round) if pb else TrainRound.NEAREST,
            a_off=a_off,
            r_off=r_off,
            groups=groups,
            amode=amode,
            i_off=i_off,
            i_roff=i_roff,
            i_groups=i_groups,
            imode=imode,
            stride=stride,  # type: ignore[arg-type]
            pad=pad,  # type: ignore[arg-type]
            gidx=gidx,
            in_gidx=in_gidx,
        )
        source = pre.args[0] if pre is not None else x
        self.env[chain[-1]] = self.emit(source, [pw[1]] + ([pb[1]] if pb else []), layer)  # type: ignore[arg-type]
        return chain

    def run(self) -> fx.Graph | None:
        done: set[fx.Node] = set()
        for node in self.graph.nodes:
            if node in done or node is self.bank_node or node in self.items:
                continue
            if node.op == "get_attr" and node in self.param_of.values():
                continue  # read by the layers that use it
            if node.op == "call_function" and node.target in _LAYERS:
                chain = self.layer(node)
                if chain is not None:
                    done.update(chain)
                    continue
            if node.op == "call_module":
                spec = self.quantizer(node, node.args[0])  # type: ignore[arg-type]
                if spec is not None and self.feeds_layer(node):
                    self.deferred.add(node)  # quantized by the layer that reads it
                    continue
                if spec is not None:
                    a_off, r_off, groups, amode, gidx = self.act_part(node)
                    layer = ChainLayer(
                        LayerKind.QUANTIZER, a_off=a_off, r_off=r_off, groups=groups, amode=amode, gidx=gidx
                    )
                    self.env[node] = self.emit(node.args[0], [], layer)  # type: ignore[arg-type]
                    continue
            uses_bank = [a for a in node.all_input_nodes if a is self.bank_node or a in self.items]
            if uses_bank:
                return None  # something else reads the bank: keep the unfused path
            self.env[node] = self.new.node_copy(node, lambda a: self.env[a])
        self.merge()
        return self.new

    def merge(self) -> None:
        """Merge each chain into the next one when that is its only reader, then make every
        chain a call of its packed plan."""
        for node in list(self.new.nodes):
            prev = node.args[0] if node in self.pending else None
            if prev in self.pending and len(prev.users) == 1:  # type: ignore[union-attr]
                slots, layers = self.pending.pop(prev)  # type: ignore[arg-type]
                self.pending[node] = (slots + self.pending[node][0], layers + self.pending[node][1])
                node.args = prev.args  # type: ignore[union-attr]
                self.new.erase_node(prev)  # type: ignore[arg-type]
        last = len(self.pending) - 1
        for count, (node, (slots, layers)) in enumerate(self.pending.items()):
            chain = ChainCall(layers, slots, self.bank_slots, count, self.decay)
            if count == last:
                chain.cost = self.make_cost(chain.plan)
            with self.new.inserting_before(node):
                call = self.new.call_function(chain, node.args)
            node.replace_all_uses_with(call)
            self.new.erase_node(node)
        self.new.lint()


def chains(graph: fx.Graph) -> list[ChainCall]:
    """The fused chains of a rewritten graph, in order."""
    return [n.target for n in graph.nodes if n.op == "call_function" and isinstance(n.target, ChainCall)]


def fused_graph(qmod: QuantizedModule, make_cost: CostFactory) -> fx.Graph | None:
    """The body's graph with fused layers, or None if it does not fuse."""
    if not qmod.bank.simple_layout:
        return None
    return _Rewrite(qmod, make_cost).run()
