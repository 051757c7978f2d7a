"""The fused training forward of a shim: its body with every layer as one kernel call.

In a training step on the fused C++ kernels the unfused body still makes a dozen small calls
per layer (bank outputs, weight cast, linear or conv, ReLU, activation quantizer) and as many
autograd nodes. This module rewrites the body's graph once so that each

    linear | conv  [-> relu]  [-> activation quantizer]

chain, with its weight and bias casts and the quantizer of its input when only this layer reads
it, is one ``torch.ops.hgqir.layer`` call (one autograd node) that reads the flat ``f`` and
ranges of the bank directly; the remaining activation quantizers become kind-0 ``layer`` calls. Values, ranges and gradients are those of the unfused path (the
kernel calls ATen's own linear, convolution and their backward).

The rewrite applies only when every bank output is consumed by such a chain or quantizer (plain
WRAP quantizers and per-element weights: :attr:`QuantBank.native_layout`); otherwise (table,
softmax or pooling quantizers, quantized constants of ``+ - *``, linear layers on inputs of rank
above 2) the shim keeps the unfused kernel path. The result is a plain function
``forward(body, *inputs)`` generated with :meth:`torch.fx.Graph.python_code`; it holds no
tensors (parameters are read from ``body`` on every call), so ``.to()``, ``.double()`` and
``load_state_dict`` are seen. Forward hooks registered on the body's submodules do not run in
fused steps.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from . import torch_native
from .torch_modules import ActQuantizer

if TYPE_CHECKING:
    from .torch_shim import QuantizedModule

_LAYERS = {F.linear: 1, F.conv1d: 2, F.conv2d: 2}

FusedForward = Callable[..., Any]


class _Rewrite:
    def __init__(self, qmod: QuantizedModule) -> None:
        self.qmod, self.bank = qmod, qmod.bank
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
        self.attrs: dict[str, fx.Node] = {}
        self.deferred: set[fx.Node] = set()
        """Quantizers left to the layer that reads them (see :meth:`feeds_layer`)."""

    # ------------------------------------------------------------------ helpers
    def attr(self, target: str) -> fx.Node:
        if target not in self.attrs:
            self.attrs[target] = self.new.get_attr(target)
        return self.attrs[target]

    def param(self, node: Any) -> tuple[int, fx.Node] | None:
        """Spec and body attribute of a bank output that is a quantized weight or bias."""
        if node not in self.items:
            return None
        spec, item = self.items[node]
        if item != 0 or spec not in self.param_of:
            return None
        return spec, self.attr(str(self.param_of[spec].target))

    def quantizer(self, node: fx.Node, x: fx.Node) -> int | None:
        """Spec of a plain activation quantizer called on ``x`` with its own bank outputs."""
        if node.op != "call_module" or node.args[0] is not x or len(node.args) != 4:
            return None
        module = self.qmod.body.get_submodule(str(node.target))
        if type(module) is not ActQuantizer or module.native_switch is None:
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

    def emit(
        self,
        x: fx.Node,
        w: fx.Node | None,
        b: fx.Node | None,
        gidx: fx.Node,
        in_gidx: fx.Node,
        geometry: tuple[int, ...],
    ) -> fx.Node:
        # geometry: a tuple of ints, a constant of the generated code (no allocation per call)
        bank = (self.attr("hgq.f"), self.attr("hgq.vmax"), self.attr("hgq.vmin"))
        args = (self.env[x], w, b, *bank, gidx, in_gidx, geometry)
        return self.new.call_function(torch.ops.hgqir.layer.default, args)

    def act_part(self, qnode: fx.Node | None) -> tuple[list[int], fx.Node]:
        """``a_off, r_off, groups, amode`` and the group index of a quantizer (or none)."""
        if qnode is None:
            return [-1, 0, 0, 0], self.attr("hgq.no_groups")
        spec = self.quantizer(qnode, qnode.args[0])  # type: ignore[arg-type]
        assert spec is not None
        s = self.bank.specs[spec]
        part = [self.f_off[spec], self.r_off[spec], s.group_size, torch_native.round_code(s.config.round)]
        return part, self.attr(f"{qnode.target}.native_gidx")

    # ------------------------------------------------------------------ rewrite
    def weights(self, node: fx.Node) -> tuple[int, tuple[int, fx.Node], tuple[int, fx.Node] | None] | None:
        """Kind, weight and bias of a linear / conv node that fuses (None: it does not)."""
        kind = _LAYERS.get(node.target) if node.op == "call_function" else None  # type: ignore[call-overload]
        if kind is None or node.kwargs:
            return None
        x, w, b = node.args[:3]
        pw = self.param(w)
        pb = self.param(b) if b is not None else None
        if pw is None or (b is not None and pb is None) or not isinstance(x, fx.Node):
            return None
        if kind == 1 and len(self.qmod.plan.records[x.name].shape) != 1:
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
        chain, relu, qnode = [node], 0, None
        nxt = self.sole_user(node)
        if nxt is not None and nxt.op == "call_function" and nxt.target is torch.relu:
            chain.append(nxt)
            relu = 1
            nxt = self.sole_user(nxt)
        if nxt is not None and self.quantizer(nxt, chain[-1]) is not None:
            chain.append(nxt)
            qnode = nxt
        specs = self.bank.specs
        modes = [torch_native.round_code(specs[p[0]].config.round) if p else 0 for p in (pw, pb)]
        head = [kind, relu, self.f_off[pw[0]], self.f_off[pb[0]] if pb else -1, *modes]
        if kind == 2:
            stride, pad = node.args[3:5]
            geo = [len(stride), *stride, *pad]  # type: ignore[arg-type, misc]
        else:
            geo = [0]
        part, gidx = self.act_part(qnode)
        pre_part, in_gidx = self.act_part(pre)
        source = pre.args[0] if pre is not None else x
        geometry = (*head, *part, *pre_part, *geo)
        self.env[chain[-1]] = self.emit(source, pw[1], pb[1] if pb else None, gidx, in_gidx, geometry)  # type: ignore[arg-type]
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
                    part, gidx = self.act_part(node)
                    geometry = (0, 0, -1, -1, 0, 0, *part, -1, 0, 0, 0, 0)
                    self.env[node] = self.emit(node.args[0], None, None, gidx, self.attr("hgq.no_groups"), geometry)  # type: ignore[arg-type]
                    continue
            uses_bank = [a for a in node.all_input_nodes if a is self.bank_node or a in self.items]
            if uses_bank:
                return None  # something else reads the bank: keep the unfused path
            self.env[node] = self.new.node_copy(node, lambda a: self.env[a])
        return self.new


def fused_graph(qmod: QuantizedModule) -> fx.Graph | None:
    """The body's graph with fused layers, or None if it does not fuse (or no kernels)."""
    if not (qmod.bank.native_layout and torch_native.available()):
        return None
    return _Rewrite(qmod).run()


def fused_forward(qmod: QuantizedModule) -> FusedForward | None:
    """``forward(body, *inputs)`` of the fused training step, or None if the body does not fuse."""
    graph = fused_graph(qmod)
    if graph is None:
        return None
    code = graph.python_code(root_module="self")
    scope = dict(code.globals)
    exec(compile(code.src, "<hgqir fused training step>", "exec"), scope)  # noqa: S102 (generated by torch.fx)
    return scope["forward"]  # type: ignore[no-any-return]
