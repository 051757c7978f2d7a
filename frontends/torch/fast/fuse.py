"""The fused training forward of a shim: its body with runs of layers as single kernel calls.

In a training step on the fused C++ kernels the unfused body still makes a dozen small calls
per layer (bank outputs, weight cast, linear or conv, ReLU, activation quantizer) and as many
autograd nodes. This module rewrites the body's graph once so that each

    linear | conv  [-> relu]  [-> activation quantizer]

with its weight and bias casts and the quantizer of its input when only this layer reads it, is
one layer of a ``torch.ops.hgqir.chain`` call that reads the flat ``f`` and ranges of the bank
directly; the remaining activation quantizers become weightless layers. Layers that feed only
the next one merge into one call (one autograd node): an MLP trains on a single call each way.
Values, ranges and gradients are those of the unfused path (the kernel calls ATen's own linear,
convolution and their backward).

The rewrite applies only when every bank output is consumed by such a chain or quantizer (plain
WRAP quantizers and per-element weights: :attr:`QuantBank.native_layout`); otherwise (table,
softmax or pooling quantizers, quantized constants of ``+ - *``, linear layers on inputs of rank
above 2) the shim keeps the unfused kernel path. The result (:class:`FusedStep`) runs a
plain function generated with :meth:`torch.fx.Graph.python_code`; besides each chain's static
plan (an int64 vector) it holds no tensors (parameters are read from their modules on every
call), so ``.to()``, ``.double()`` and ``load_state_dict`` are seen. Forward hooks
registered on the body's submodules do not run in fused steps.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..shim.quantizers import ActQuantizer
from . import native

if TYPE_CHECKING:
    from ..shim.module import QuantizedModule

_LAYERS = {F.linear: 1, F.conv1d: 2, F.conv2d: 2}

FusedForward = Callable[..., Any]

RECORD = 23
"""Entries per layer in a chain plan (``kRecord`` of the kernel)."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a fused chain (see ``hgqir::chain`` in ``native/hgq_kernels.cpp``).

    ``kind``: 0 a quantizer alone, 1 linear, 2 convolution. Offsets index the bank's flat ``f``
    (``w_off``, ``b_off``, ``a_off``, ``i_off``; negative: absent) and ranges (``r_off``,
    ``i_roff``); ``a_*`` is the quantizer after the layer, ``i_*`` the one on its input; modes
    are :func:`native.round_code` values; ``gidx`` / ``in_gidx``: the group of each element
    per sample (None: one group per element)."""

    kind: int
    relu: bool = False
    w_off: int = -1
    b_off: int = -1
    wmode: int = 0
    bmode: int = 0
    a_off: int = -1
    r_off: int = 0
    groups: int = 0
    amode: int = 0
    i_off: int = -1
    i_roff: int = 0
    i_groups: int = 0
    imode: int = 0
    stride: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    gidx: Tensor | None = None
    in_gidx: Tensor | None = None


def pack_plan(layers: Sequence[Layer]) -> Tensor:
    """The int64 plan of ``hgqir::chain``: a header, one record per layer, then group indices."""
    head: list[int] = [len(layers), RECORD]
    tail: list[int] = []
    at = len(head) + RECORD * len(layers)
    for layer in layers:
        nd = len(layer.stride)
        if len(layer.pad) != nd or nd > 2:
            raise ValueError(f"a chain layer has 0 to 2 spatial axes with one stride and pad each, got {layer}")
        where = []
        for g in (layer.gidx, layer.in_gidx):
            values = [] if g is None else [int(v) for v in g.reshape(-1).tolist()]
            where += [at + len(tail), len(values)]
            tail += values
        head += [
            layer.kind,
            int(layer.relu),
            layer.w_off,
            layer.b_off,
            layer.wmode,
            layer.bmode,
            layer.a_off,
            layer.r_off,
            layer.groups,
            layer.amode,
            layer.i_off,
            layer.i_roff,
            layer.i_groups,
            layer.imode,
            nd,
            *layer.stride,
            *(0,) * (2 - nd),
            *layer.pad,
            *(0,) * (2 - nd),
            *where,
        ]
    return torch.tensor(head + tail, dtype=torch.int64)


Slot = tuple[dict[str, Any], str]
"""Where a weight lives: its module's ``_parameters`` (or ``_buffers``) and its name."""


def slot(module: nn.Module, name: str) -> Slot:
    """The slot of a module's parameter or buffer ``name``."""
    return (module._parameters if name in module._parameters else module._buffers, name)


class StepCost:
    """The regularizer of a fused training step, computed by its last chain.

    ``loss + qmod.regularization()`` would otherwise be a second kernel call, a second autograd
    node and a second gradient into ``f``: on an MLP the step's largest overhead after the
    layers. The last chain (all ranges updated by then) also returns ``beta * EBOPs + l1 *
    sum(bits)``; :meth:`take` hands it to ``regularization()`` once, and only while it is what
    computing it anew would give: the same ``f``, weights and ranges (same tensors, unchanged
    since), the same ``beta`` and ``bit_l1``, and no backward pass through the chain since (it
    frees the graph; the chain's backward bumps its plan's version). Otherwise
    ``regularization()`` computes it. A step whose cost was not taken stops the computation
    until ``regularization()`` is called again (loops without the regularizer pay nothing)."""

    def __init__(self, qmod: QuantizedModule, plan: Tensor) -> None:
        bank = qmod.bank
        slots = qmod.param_slots()
        self.slots = tuple(slots[k] for k in bank.native_weight_order)
        self.index, self.values = qmod._native_ebops_index()
        self.bank_params, self.bank_buffers = bank._parameters, bank._buffers
        self.plan = plan
        self.scales = qmod._scales
        self.wanted = True
        self.kept: tuple[Any, ...] | None = None

    def run(
        self, x: Tensor, weights: list[Tensor], f: Tensor, vmax: Tensor, vmin: Tensor, plan: Tensor
    ) -> Tensor | None:
        """The chain's output, the cost kept; None if this step should not compute it."""
        if self.kept is not None:  # the last step's cost was not taken: the loop does not use it
            self.kept, self.wanted = None, False
        if not (self.wanted and f.requires_grad):
            return None
        ws = [d[k] for d, k in self.slots]
        scale, l1 = self.scales()
        y, cost = torch.ops.hgqir.chain_cost.default(
            x, weights, f, vmax, vmin, plan, ws, self.index, self.values, scale, l1
        )
        if cost.numel():  # (empty: weights and f differ in dtype, no cost computed)
            self.kept = (cost, scale, l1, self._state(f, ws))
        return y  # type: ignore[no-any-return]

    def _state(self, f: Tensor, ws: list[Tensor]) -> tuple[list[Tensor], list[int]]:
        """Everything the cost depends on: the tensors (compared by identity), their versions."""
        buffers = self.bank_buffers
        tensors = [f, buffers["vmax"], buffers["vmin"], *ws]
        return tensors, [self.plan._version, *[t._version for t in tensors]]  # type: ignore[union-attr]

    def take(self, scale: float, l1: float) -> Tensor | None:
        """The step's cost if it is still what ``regularization()`` would compute now (once)."""
        kept, self.kept, self.wanted = self.kept, None, True
        if kept is None or kept[1] != scale or kept[2] != l1 or not torch.is_grad_enabled():
            return None
        tensors, versions = self._state(self.bank_params["f"], [d[k] for d, k in self.slots])  # type: ignore[arg-type]
        same = versions == kept[3][1] and all(map(operator.is_, tensors, kept[3][0]))
        return kept[0] if same else None  # type: ignore[no-any-return]


class FusedStep:
    """The fused training forward of a shim (:meth:`run`), with its :class:`StepCost`."""

    def __init__(self, qmod: QuantizedModule, forward: FusedForward, cost: StepCost | None) -> None:
        self.forward, self.cost = forward, cost
        self.body, self.bank = qmod.body, qmod.bank
        self.bank_params, self.switch = self.bank._parameters, self.bank.native

    def run(self, inputs: tuple[Tensor, ...]) -> Any:
        """The fused training forward of ``inputs``; None when this forward cannot run fused
        (gradients off, ``f`` not on the CPU, kernels switched off)."""
        if not (torch.is_grad_enabled() and self.bank_params["f"].is_cpu and native.available()):  # type: ignore[union-attr]
            return None
        self.switch.on = True
        bank = self.bank
        if bank.last is not None:  # (nn.Module.__setattr__ is slow: only when needed)
            bank.last = None
        return self.forward(self.body, *inputs)

    def take_cost(self, scale: float, l1: float) -> Tensor | None:
        return self.cost.take(scale, l1) if self.cost is not None else None


class ChainCall:
    """One fused chain of the generated forward: ``x -> y``.

    It reads its weights and the bank's ``f`` and ranges from their modules' own dictionaries on
    every call (two dictionary lookups each, not ``nn.Module.__getattr__``), so parameters that
    ``.to()``, ``.double()`` or ``load_state_dict(assign=True)`` replace are seen. The last chain
    of a step carries the :class:`StepCost`."""

    __module__ = __name__

    def __init__(
        self, layers: Sequence[Layer], slots: Sequence[Slot], bank: nn.Module, index: int, cost: StepCost | None = None
    ) -> None:
        self.layers = tuple(layers)
        self.slots = tuple(slots)
        self.plan = pack_plan(layers)
        self.bank_params, self.bank_buffers = bank._parameters, bank._buffers
        self.cost = cost
        self.__name__ = f"chain{index}"  # the name of this global in the generated code

    def __call__(self, x: Tensor) -> Tensor:
        params, buffers = self.bank_params, self.bank_buffers
        f, vmax, vmin = params["f"], buffers["vmax"], buffers["vmin"]
        weights = [d[k] for d, k in self.slots]
        y = self.cost.run(x, weights, f, vmax, vmin, self.plan) if self.cost is not None else None  # type: ignore[arg-type]
        if y is None:
            y = torch.ops.hgqir.chain.default(x, weights, f, vmax, vmin, self.plan)
        return y  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<hgqir chain of {len(self.layers)} layers>"


def _pending(x: Tensor) -> Tensor:
    """Target of a chain node before the chains are merged (never called)."""
    raise AssertionError("an unmerged chain node was called")


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
        self.deferred: set[fx.Node] = set()
        """Quantizers left to the layer that reads them (see :meth:`feeds_layer`)."""
        self.pending: dict[fx.Node, tuple[list[Slot], list[Layer]]] = {}
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

    def emit(self, x: fx.Node, slots: list[Slot], layer: Layer) -> fx.Node:
        node = self.new.call_function(_pending, (self.env[x],))
        self.pending[node] = (slots, [layer])
        return node

    def act_part(self, qnode: fx.Node | None) -> tuple[int, int, int, int, Tensor | None]:
        """``f`` offset, range offset, groups, rounding and group index of a quantizer node."""
        if qnode is None:
            return -1, 0, 0, 0, None
        spec = self.quantizer(qnode, qnode.args[0])  # type: ignore[arg-type]
        assert spec is not None
        s = self.bank.specs[spec]
        module: ActQuantizer = self.qmod.body.get_submodule(str(qnode.target))  # type: ignore[assignment]
        gidx = module.native_gidx
        return (
            self.f_off[spec],
            self.r_off[spec],
            s.group_size,
            native.round_code(s.config.round),
            gidx if gidx.numel() else None,
        )

    # ------------------------------------------------------------------ rewrite
    def weights(self, node: fx.Node) -> tuple[int, tuple[int, Slot], tuple[int, Slot] | None] | None:
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
        stride, pad = (tuple(node.args[3]), tuple(node.args[4])) if kind == 2 else ((), ())  # type: ignore[arg-type]
        a_off, r_off, groups, amode, gidx = self.act_part(qnode)
        i_off, i_roff, i_groups, imode, in_gidx = self.act_part(pre)
        layer = Layer(
            kind,
            relu,
            self.f_off[pw[0]],
            self.f_off[pb[0]] if pb else -1,
            native.round_code(specs[pw[0]].config.round),
            native.round_code(specs[pb[0]].config.round) if pb else 0,
            a_off,
            r_off,
            groups,
            amode,
            i_off,
            i_roff,
            i_groups,
            imode,
            stride,  # type: ignore[arg-type]
            pad,  # type: ignore[arg-type]
            gidx,
            in_gidx,
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
                    layer = Layer(0, a_off=a_off, r_off=r_off, groups=groups, amode=amode, gidx=gidx)
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
            chain = ChainCall(layers, slots, self.bank, count)
            if count == last:
                chain.cost = StepCost(self.qmod, chain.plan)
            with self.new.inserting_before(node):
                call = self.new.call_function(chain, node.args)
            node.replace_all_uses_with(call)
            self.new.erase_node(node)
        self.new.lint()


def chains(graph: fx.Graph) -> list[ChainCall]:
    """The fused chains of a rewritten graph, in order."""
    return [n.target for n in graph.nodes if n.op == "call_function" and isinstance(n.target, ChainCall)]


def fused_graph(qmod: QuantizedModule) -> fx.Graph | None:
    """The body's graph with fused layers, or None if it does not fuse (or no kernels)."""
    if not (qmod.bank.native_layout and native.available()):
        return None
    return _Rewrite(qmod).run()


def fused_step(qmod: QuantizedModule) -> FusedStep | None:
    """The fused training step of a shim, or None if its body does not fuse."""
    graph = fused_graph(qmod)
    if graph is None:
        return None
    code = graph.python_code(root_module="self")
    scope = dict(code.globals)
    exec(compile(code.src, "<hgqir fused training step>", "exec"), scope)  # noqa: S102 (generated by torch.fx)
    found = chains(graph)
    return FusedStep(qmod, scope["forward"], found[-1].cost if found else None)
