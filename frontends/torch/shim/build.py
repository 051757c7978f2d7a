"""Build a shim body: the traced model rewritten with torch.fx into its quantized twin.

Where quantizers go: every model input gets one; every tensor that a multiplying or adding
op (linear, conv, batchnorm, add, sub, mul) reads is quantized once (shared by its readers);
sigmoid, tanh and softmax quantize their own input (their tables are indexed by it); average
pooling quantizes its own output (the division truncates into that type); every model output
is quantized unless a quantizer or table produced it. Shape ops, relu and max pooling are exact
and need none. Weights, biases and scalar constants are quantized by the bank.

Each step takes its quantizer places from ``cfg.for_layer(name)``, with ``name`` its module path
(``block.conv``; for functions, the module they are called in) or else its fx node name
(``add_1``); a tensor read by several layers is quantized once, with the places of its first
reader. Model inputs use their placeholder's name, outputs the name of the step producing them.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..importer.records import Rec
from ..importer.trace import Step, Traced, module_path_of
from ..options import ConfigError, QuantizerConfig, ShimConfig, unmatched_overrides
from . import steps_tables
from .bank import QSpec, QuantBank
from .ebops import CostTerm
from .plan import Plan
from .quant import decay_factor
from .quantizers import ActQuantizer, AvgPoolQuantizer, QBatchNorm


class _Builder:
    def __init__(self, traced: Traced, cfg: ShimConfig) -> None:
        self.t, self.cfg = traced, cfg
        self.src = dict(traced.gm.named_modules())
        self.g = fx.Graph()
        self.root: dict[str, Any] = {}
        self.specs: list[QSpec] = []
        self.env: dict[str, fx.Node] = {}
        self.quant_of: dict[str, fx.Node] = {}
        self.quantized: dict[str, int] = {}
        """Body node name -> act spec of the quantizer that produced it."""
        self.typed: set[str] = set()
        self.records: dict[str, Rec] = {}
        self.costs: list[CostTerm] = []
        self.modules: dict[int, str] = {}
        self.bn: dict[str, tuple[int, int]] = {}
        self.param_nodes: list[fx.Node] = []
        self.param_cache: dict[str, tuple[int, fx.Node]] = {}
        self.bank_node: fx.Node | None = None
        self.decay = decay_factor(cfg.i_decay)
        self.names: list[str] = []
        """Every name a step was looked up by (to report overrides that match none)."""

    def layer_cfg(self, node: fx.Node) -> ShimConfig:
        """The config of the step at ``node``: the override for its module path, else for its name."""
        for name in dict.fromkeys((module_path_of(node), node.name)):
            if not name:
                continue
            self.names.append(name)
            found = self.cfg.for_layer(name)
            if found is not self.cfg:
                return found
        return self.cfg

    # ------------------------------------------------------------------ helpers
    def _name(self, base: str, dotted: bool = False) -> str:
        keep = "_." if dotted else "_"
        base = "".join(c if c.isalnum() or c in keep else "_" for c in base) or "q"
        name, n = base, 1
        while name in self.root:
            name, n = f"{base}_{n}", n + 1
        return name

    def _shape(self, node_name: str) -> tuple[int, ...]:
        return self.t.shapes[node_name]

    def _spec(
        self, name: str, role: str, shape: tuple[int, ...], config: QuantizerConfig, source: str | None = None
    ) -> int:
        self.specs.append(QSpec(name, role, tuple(shape), config, source))
        return len(self.specs) - 1

    def _bank_out(self, spec: int, item: int = 0) -> fx.Node:
        """Bank output ``item`` of a spec: 0 value or ``f``, 1 learned ``i``, 2 ``vmax``, 3 ``vmin``."""
        assert self.bank_node is not None
        return self.g.call_function(operator.getitem, (self.bank_node, 4 * spec + item))

    def _param(
        self, tensor: torch.Tensor, source: str, config: QuantizerConfig, shape: tuple[int, ...] | None = None
    ) -> tuple[int, fx.Node]:
        """Spec and quantized-value node of a weight, bias or constant (shared layers reuse them)."""
        if source in self.param_cache:
            return self.param_cache[source]
        self.root[source] = tensor
        assert self.bank_node is not None
        with self.g.inserting_before(self.bank_node):
            self.param_nodes.append(self.g.get_attr(source))
        spec = self._spec(source, "param", tuple(tensor.shape) if shape is None else shape, config, source)
        self.param_cache[source] = (spec, self._bank_out(spec))
        return self.param_cache[source]

    def _module(
        self, base: str, module: nn.Module, args: tuple[Any, ...], spec: int | None = None, dotted: bool = False
    ) -> fx.Node:
        name = self._name(base, dotted)
        self.root[name] = module
        if spec is not None:
            self.modules[spec] = name
        return self.g.call_module(name, args)

    def _act(
        self,
        x: fx.Node,
        shape: tuple[int, ...],
        config: QuantizerConfig,
        base: str,
        make: Any = None,
        record: Rec | None = None,
    ) -> fx.Node:
        """Insert an activation quantizer (or a subclass built by ``make``) on ``x``."""
        spec = self._spec(base, "act", shape, config)
        group = self.specs[spec].group
        module = make(group, spec) if make else ActQuantizer(group, config, base)
        if not config.learns_i:
            module.decay = self.decay
        args: tuple[Any, ...] = (x, self._bank_out(spec), self._bank_out(spec, 2), self._bank_out(spec, 3))
        if config.learns_i:
            args += (self._bank_out(spec, 1),)
        node = self._module(base, module, args, spec)
        self.records[node.name] = record or Rec("quant", [x.name], {"spec": spec}, shape)
        self.records[node.name].attrs.update(round=module.round, overflow=module.overflow)
        self.quantized[node.name] = spec
        self.typed.add(node.name)
        return node

    def _quantized(self, orig: fx.Node, reader: fx.Node) -> fx.Node:
        """The shared quantized version of an operand (with the places of its first reader)."""
        node = self.env[orig.name]
        if node.name in self.quantized:
            return node
        if node.name not in self.quant_of:
            config = self.layer_cfg(reader).activation
            self.quant_of[node.name] = self._act(node, self._shape(orig.name), config, f"{orig.name}_q")
        return self.quant_of[node.name]

    # ------------------------------------------------------------------ steps
    def build(self) -> tuple[fx.GraphModule, Plan]:
        placeholders = [s for s in self.t.steps if s.kind == "input"]
        for s in placeholders:
            self.env[s.node.name] = self.g.placeholder(s.node.name)
        self.bank_node = self.g.call_module("hgq", ())
        plan_inputs = []
        for s in placeholders:
            ph = self.env[s.node.name]
            shape = self._shape(s.node.name)
            rec = Rec("input", [], {"name": ph.name}, shape)
            config = self.layer_cfg(s.node).input
            self.env[s.node.name] = self._act(ph, shape, config, f"{s.node.target}_q", record=rec)
            self.records[self.env[s.node.name].name].attrs["spec"] = self.quantized[self.env[s.node.name].name]
            plan_inputs.append(self.env[s.node.name].name)
        outputs: list[str] = []
        for s in self.t.steps:
            if s.kind == "output":
                outputs = self._output(s)
            elif s.kind != "input":
                getattr(self, f"_do_{s.kind}")(s)
        self.bank_node.args = tuple(self.param_nodes)
        unmatched = unmatched_overrides(self.cfg, self.names)
        if unmatched:
            raise ConfigError(
                f"override pattern(s) {unmatched} match no layer; names here (module paths and fx node names): "
                f"{sorted(set(self.names))}"
            )
        self.root["hgq"] = QuantBank(self.specs)
        body = fx.GraphModule(self.root, self.g, "ShimBody")
        return body, Plan(self.specs, self.records, self.costs, self.modules, plan_inputs, outputs, self.bn)

    def _emit(self, s: Step, node: fx.Node, kind: str, inputs: list[Any], **attrs: Any) -> None:
        self.env[s.node.name] = node
        self.records[node.name] = Rec(kind, inputs, attrs, self._shape(s.node.name))

    def _output(self, s: Step) -> list[str]:
        outs = []
        for o in s.inputs:
            node = self.env[o.name]
            if node.name not in self.typed:
                config = self.layer_cfg(o).output_config
                node = self._act(node, self._shape(o.name), config, f"{o.name}_q")
            outs.append(node)
        self.g.output(outs[0] if len(outs) == 1 else tuple(outs))
        return [n.name for n in outs]

    def _weights(self, s: Step) -> tuple[int, fx.Node, int | None, fx.Node | None]:
        m = s.module
        path = str(s.node.target)
        assert m is not None
        cfg = self.layer_cfg(s.node)
        w_spec, w = self._param(m.weight, f"{path}.weight", cfg.weight)
        if getattr(m, "bias", None) is None:
            return w_spec, w, None, None
        b_spec, b = self._param(m.bias, f"{path}.bias", cfg.bias)
        return w_spec, w, b_spec, b

    def _do_linear(self, s: Step) -> None:
        x = self._quantized(s.inputs[0], s.node)
        w_spec, w, b_spec, b = self._weights(s)
        node = self.g.call_function(F.linear, (x, w, b))
        self._emit(s, node, "linear", [x.name], w=w_spec, b=b_spec)
        self.costs.append(CostTerm("dense", (self.quantized[x.name], w_spec)))

    def _do_conv(self, s: Step) -> None:
        x = self._quantized(s.inputs[0], s.node)
        w_spec, w, b_spec, b = self._weights(s)
        a = s.attrs
        pads = a["pads"]
        if all(p0 == p1 for p0, p1 in pads):
            padding = tuple(p0 for p0, _ in pads)
            inp = x
        else:
            flat = [v for p in reversed(pads) for v in p]
            inp = self.g.call_function(F.pad, (x, flat))
            padding = (0,) * a["nd"]
        conv = F.conv1d if a["nd"] == 1 else F.conv2d
        groups = int(a.get("groups", 1))
        # depthwise: groups as a keyword, so the fused training kernels leave the node alone
        kwargs: dict[str, Any] = {"groups": groups} if groups > 1 else {}
        extra = {"dilation": a["dilation"]} if "dilation" in a else {}
        kwargs.update(extra)  # keywords: the fused training kernels leave these nodes alone
        node = self.g.call_function(conv, (inp, w, b, a["stride"], padding), kwargs)
        self._emit(s, node, "conv", [x.name], w=w_spec, b=b_spec, stride=a["stride"], pads=pads, groups=groups, **extra)
        cost = {"stride": a["stride"], "pads": pads, "groups": groups, **extra}
        self.costs.append(CostTerm("conv", (self.quantized[x.name], w_spec), cost))

    def _do_batchnorm(self, s: Step) -> None:
        x = self._quantized(s.inputs[0], s.node)
        m = s.module
        path = str(s.node.target)
        c = int(m.num_features)  # type: ignore[union-attr]
        cfg = self.layer_cfg(s.node)
        s_spec = self._spec(f"{path}.scale", "derived", (c,), cfg.weight)
        o_spec = self._spec(f"{path}.offset", "derived", (c,), cfg.bias)
        bn = QBatchNorm(m, cfg.weight, cfg.bias)  # type: ignore[arg-type]
        node = self._module(path, bn, (x, self._bank_out(s_spec), self._bank_out(o_spec)), s_spec, dotted=True)
        self.modules[o_spec] = str(node.target)
        self.bn[str(node.target)] = (s_spec, o_spec)
        self._emit(s, node, "batchnorm", [x.name], scale=s_spec, offset=o_spec, module=node.target)
        self.costs.append(CostTerm("bn", (self.quantized[x.name], s_spec)))

    def _do_relu(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        self._emit(s, self.g.call_function(torch.relu, (x,)), "relu", [x.name])

    _table = steps_tables.table
    _do_sigmoid = steps_tables.do_sigmoid
    _do_tanh = steps_tables.do_tanh
    _do_table = steps_tables.do_table
    _lut = steps_tables.lut
    _do_softmax = steps_tables.do_softmax
    _do_prelu = steps_tables.do_prelu

    def _do_maxpool(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        a = s.attrs
        pool = F.max_pool1d if a["nd"] == 1 else F.max_pool2d
        node = self.g.call_function(pool, (x, a["kernel"], a["stride"], tuple(p for p, _ in a["pads"])))
        self._emit(s, node, "maxpool", [x.name], **a)

    def _pool_quant(self, s: Step, kind: str, **attrs: Any) -> None:
        x = self.env[s.inputs[0].name]
        shape = self._shape(s.node.name)
        cfg = self.layer_cfg(s.node).activation
        rec = Rec(kind, [x.name], dict(attrs), shape)
        node = self._act(
            x, shape, cfg, s.node.name, make=lambda g, n: AvgPoolQuantizer(g, cfg, s.node.name, **attrs), record=rec
        )
        rec.attrs["spec"] = self.quantized[node.name]
        self.env[s.node.name] = node

    def _do_avgpool(self, s: Step) -> None:
        self._pool_quant(s, "avgpool", **s.attrs)

    def _do_global_avgpool(self, s: Step) -> None:
        self._pool_quant(s, "global_avgpool", nd=0)

    def _do_global_maxpool(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        dims = tuple(range(2, len(self._shape(s.inputs[0].name)) + 1))
        node = self.g.call_function(torch.amax, (x, dims, True))
        self._emit(s, node, "global_maxpool", [x.name])

    def _do_reshape(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        shape = self._shape(s.node.name)
        self._emit(s, self.g.call_method("reshape", (x, (-1, *shape))), "reshape", [x.name])

    def _do_permute(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        perm = s.attrs["perm"]
        node = self.g.call_method("permute", (x, 0, *(p + 1 for p in perm)))
        self._emit(s, node, "permute", [x.name], perm=perm)

    def _do_cat(self, s: Step) -> None:
        xs = [self.env[a.name] for a in s.inputs]
        node = self.g.call_function(torch.cat, (xs, s.attrs["axis"] + 1))
        self._emit(s, node, "cat", [x.name for x in xs], axis=s.attrs["axis"])

    def _do_stack(self, s: Step) -> None:
        xs = [self.env[a.name] for a in s.inputs]
        node = self.g.call_function(torch.stack, (xs, s.attrs["axis"] + 1))
        self._emit(s, node, "stack", [x.name for x in xs], axis=s.attrs["axis"])

    def _do_slice(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        index = (slice(None), *(slice(b, e) for b, e in zip(s.attrs["begin"], s.attrs["end"], strict=True)))
        self._emit(s, self.g.call_function(operator.getitem, (x, index)), "slice", [x.name], **s.attrs)

    def _do_pad(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        rank = len(self._shape(s.inputs[0].name))
        flat = [v for a in range(rank - 1, -1, -1) for v in s.attrs["pads"].get(a, (0, 0))]
        self._emit(s, self.g.call_function(F.pad, (x, flat)), "pad", [x.name], **s.attrs)

    def _do_upsample(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        for a, k in sorted(s.attrs["factors"].items()):
            x = self.g.call_method("repeat_interleave", (x, k, a + 1))
        self._emit(s, x, "upsample", [self.env[s.inputs[0].name].name], **s.attrs)

    def _do_identity(self, s: Step) -> None:
        self.env[s.node.name] = self.env[s.inputs[0].name]

    def _do_dropout(self, s: Step) -> None:
        x = self.env[s.inputs[0].name]
        p = s.attrs.get("p", getattr(s.module, "p", 0.5))
        node = self._module(f"{s.node.name}", nn.Dropout(p), (x,))
        self._emit(s, node, "identity", [x.name])

    def _binary(self, s: Step, fn: Any) -> None:
        ops, specs, names = [], [], []
        for n, a in enumerate(s.inputs):
            if isinstance(a, fx.Node) and a.op == "get_attr":
                spec, node = self._attr(a, s)
                ops.append(node)
                specs.append(spec)
                names.append(spec)
            elif isinstance(a, fx.Node):
                q = self._quantized(a, s.node)
                ops.append(q)
                specs.append(self.quantized[q.name])
                names.append(q.name)
            else:
                constant = self.layer_cfg(s.node).constant
                spec, node = self._param(torch.tensor(float(a)), f"{s.node.name}_c{n}", constant)
                ops.append(node)
                specs.append(spec)
                names.append(spec)
        self._emit(s, self.g.call_function(fn, tuple(ops)), s.kind, names)
        self.costs.append(CostTerm("mul" if s.kind == "mul" else "add", (specs[0], specs[1])))

    def _attr(self, a: fx.Node, s: Step) -> tuple[int, fx.Node]:
        """A parameter or buffer operand, quantized as a weight (a leading batch-size-1 axis dropped)."""
        from .module import fetch

        tensor = fetch(self.t.gm, str(a.target))
        other = next(x for x in s.inputs if isinstance(x, fx.Node) and x.op != "get_attr")
        shape = tuple(tensor.shape)
        if len(shape) == len(self._shape(other.name)) + 1:  # [1, ...] spans the batch axis with size 1
            shape = shape[1:]
        return self._param(tensor, str(a.target), self.layer_cfg(s.node).weight, shape)

    def _do_add(self, s: Step) -> None:
        self._binary(s, operator.add)

    def _do_sub(self, s: Step) -> None:
        self._binary(s, operator.sub)

    def _do_mul(self, s: Step) -> None:
        self._binary(s, operator.mul)

    def _do_maximum(self, s: Step) -> None:
        self._binary(s, torch.maximum)  # costed like an adder (a comparator), as the IR counts it

    def _do_minimum(self, s: Step) -> None:
        self._binary(s, torch.minimum)


def build_body(traced: Traced, cfg: ShimConfig) -> tuple[fx.GraphModule, Plan]:
    """The shim body (an fx GraphModule) and its plan."""
    return _Builder(traced, cfg).build()
