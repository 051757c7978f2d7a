"""Where a plain float module gets its quantizers, as import records (no shim is built).

The points are the shim's (:mod:`..shim.build`): every model input; every tensor read by a
multiplying or adding op (linear, conv, batchnorm, add, sub, mul), once, shared by its readers;
the input of each table (sigmoid, tanh, softmax); the output of average pooling; every model
output not produced by a quantizer or a table. Weights, biases, batchnorm's folded scale and
offset, parameters used as operands and scalar constants are quantized constants.
:class:`Placement` records the :class:`~.records.Rec` list for the IR converter and one
:class:`Quantizer` per point, which :mod:`.plain` then types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx

from ..options import QuantizerConfig, ShimConfig
from .records import Rec
from .trace import Step, Traced, module_path_of

OPERANDS_QUANTIZED = frozenset({"linear", "conv", "batchnorm", "add", "sub", "mul", "maximum", "minimum", "prelu"})
"""Step kinds whose tensor operands are quantized (one shared quantizer per tensor)."""
TABLES = frozenset({"sigmoid", "tanh", "table", "softmax"})
"""Step kinds that quantize their own input (their tables are indexed by it)."""
POOL_MEANS = frozenset({"avgpool", "global_avgpool"})
"""Step kinds whose result is truncated into its own quantizer's type."""


@dataclass
class Quantizer:
    """One quantization point: its role, unbatched shape and config."""

    role: str
    """``act`` (typed from calibration), ``param`` (a constant tensor), ``scalar``, ``bn_scale`` or
    ``bn_offset`` (batchnorm's folded parameters)."""
    shape: tuple[int, ...]
    config: QuantizerConfig
    source: Any = None
    """Constants: the tensor, the Python number or (batchnorm) the module."""


@dataclass
class Placement:
    """The records and quantizers of a traced module."""

    records: dict[str, Rec] = field(default_factory=dict)
    quantizers: list[Quantizer] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    reads: dict[str, dict[int, int]] = field(default_factory=dict)
    """Per step node: operand position -> spec of the quantized value it reads instead."""
    produces: dict[str, int] = field(default_factory=dict)
    """Per node whose value is quantized where it is made (inputs, pool means): its spec."""
    operand_spec: dict[str, int] = field(default_factory=dict)
    """Per tensor node read quantized: the spec of its shared quantizer."""
    output_spec: dict[str, int] = field(default_factory=dict)
    """Per node that is a model output without a type of its own: its output quantizer."""


class Placer:
    """Walks the steps once and places every quantizer (see the module docstring)."""

    def __init__(self, traced: Traced, cfg: ShimConfig) -> None:
        self.t, self.cfg = traced, cfg
        self.p = Placement()
        self.env: dict[str, str] = {}
        """Traced node name -> name of the record holding its value."""
        self.quantized: set[str] = set()
        """Records whose value comes out of a quantizer (read as they are)."""
        self.typed: set[str] = set()
        """Records that need no output quantizer (quantizers and tables)."""

    def layer_cfg(self, node: fx.Node) -> ShimConfig:
        for name in (module_path_of(node), node.name):
            found = self.cfg.for_layer(name) if name else self.cfg
            if found is not self.cfg:
                return found
        return self.cfg

    def spec(self, role: str, shape: tuple[int, ...], config: QuantizerConfig, source: Any = None) -> int:
        self.p.quantizers.append(Quantizer(role, tuple(shape), config, source))
        return len(self.p.quantizers) - 1

    def record(self, key: str, kind: str, inputs: list[Any], shape: tuple[int, ...], **attrs: Any) -> str:
        self.p.records[key] = Rec(kind, inputs, attrs, tuple(shape))
        return key

    def quant_attrs(self, spec: int) -> dict[str, Any]:
        config = self.p.quantizers[spec].config
        return {"spec": spec, "round": config.round, "overflow": config.overflow}

    def operand(self, node: fx.Node, reader: fx.Node) -> tuple[str, int]:
        """The record of the quantized value of ``node`` (created on its first reader) and the
        spec the reader quantizes it with (-1: it reads a quantizer's output as it is)."""
        if self.env[node.name] in self.quantized:
            return self.env[node.name], -1
        if node.name not in self.p.operand_spec:
            spec = self.spec("act", self.t.shapes[node.name], self.layer_cfg(reader).activation)
            self.p.operand_spec[node.name] = spec
            shape = self.t.shapes[node.name]
            self.record(f"{node.name}_q", "quant", [self.env[node.name]], shape, **self.quant_attrs(spec))
        return f"{node.name}_q", self.p.operand_spec[node.name]

    def run(self) -> Placement:
        for s in self.t.steps:
            getattr(self, f"_do_{s.kind}", self._do_exact)(s)
        return self.p

    # ------------------------------------------------------------------ steps
    def _do_input(self, s: Step) -> None:
        shape = self.t.shapes[s.node.name]
        spec = self.spec("act", shape, self.layer_cfg(s.node).input)
        name = self.record(f"{s.node.name}_q", "input", [], shape, name=s.node.name, **self.quant_attrs(spec))
        self.p.produces[s.node.name] = spec
        self.env[s.node.name] = name
        self.quantized.add(name)
        self.typed.add(name)

    def _do_output(self, s: Step) -> None:
        for o in s.inputs:
            name = self.env[o.name]
            if name not in self.typed:
                spec = self.spec("act", self.t.shapes[o.name], self.layer_cfg(o).output_config)
                self.p.output_spec[o.name] = spec
                name = self.record(f"{o.name}_out", "quant", [name], self.t.shapes[o.name], **self.quant_attrs(spec))
            self.p.outputs.append(name)

    def _emit(self, s: Step, kind: str, inputs: list[Any], **attrs: Any) -> None:
        self.env[s.node.name] = self.record(s.node.name, kind, inputs, self.t.shapes[s.node.name], **attrs)

    def _param(self, tensor: Any, config: QuantizerConfig, shape: tuple[int, ...] | None = None) -> int:
        return self.spec("param", tuple(tensor.shape) if shape is None else shape, config, tensor)

    def _do_linear(self, s: Step) -> None:
        x, read = self.operand(s.inputs[0], s.node)
        cfg, m = self.layer_cfg(s.node), s.module
        b = self._param(m.bias.detach(), cfg.bias) if m.bias is not None else None  # type: ignore[union-attr]
        self._emit(s, "linear", [x], w=self._param(m.weight.detach(), cfg.weight), b=b)  # type: ignore[union-attr]
        self.p.reads[s.node.name] = {0: read}

    def _do_conv(self, s: Step) -> None:
        x, read = self.operand(s.inputs[0], s.node)
        cfg, m = self.layer_cfg(s.node), s.module
        b = self._param(m.bias.detach(), cfg.bias) if m.bias is not None else None  # type: ignore[union-attr]
        w = self._param(m.weight.detach(), cfg.weight)  # type: ignore[union-attr]
        groups = s.attrs.get("groups", 1)
        extra = {"dilation": s.attrs["dilation"]} if "dilation" in s.attrs else {}
        self._emit(s, "conv", [x], w=w, b=b, stride=s.attrs["stride"], pads=s.attrs["pads"], groups=groups, **extra)
        self.p.reads[s.node.name] = {0: read}

    def _do_batchnorm(self, s: Step) -> None:
        x, read = self.operand(s.inputs[0], s.node)
        cfg, c = self.layer_cfg(s.node), int(s.module.num_features)  # type: ignore[union-attr]
        scale = self.spec("bn_scale", (c,), cfg.weight, s.module)
        offset = self.spec("bn_offset", (c,), cfg.bias, s.module)
        self._emit(s, "batchnorm", [x], scale=scale, offset=offset)
        self.p.reads[s.node.name] = {0: read}

    def _table(self, s: Step, kind: str, **attrs: Any) -> None:
        x = s.inputs[0]
        spec = self.spec("act", self.t.shapes[x.name], self.layer_cfg(s.node).activation)
        self._emit(s, kind, [self.env[x.name]], **attrs, **self.quant_attrs(spec))
        self.p.reads[s.node.name] = {0: spec}
        self.typed.add(s.node.name)

    def _do_sigmoid(self, s: Step) -> None:
        self._table(s, "lut", func="sigmoid", out_f=int(self.cfg.table_f), table_bits=int(self.cfg.table_bits))

    def _do_tanh(self, s: Step) -> None:
        self._table(s, "lut", func="tanh", out_f=int(self.cfg.table_f), table_bits=int(self.cfg.table_bits))

    def _do_table(self, s: Step) -> None:
        func = s.attrs["func"]
        self._table(s, "lut", func=func, out_f=int(self.cfg.table_f), table_bits=int(self.cfg.table_bits))

    def _do_softmax(self, s: Step) -> None:
        cfg = self.cfg
        sizes = {"exp_f": cfg.softmax_exp_f, "inv_f": cfg.softmax_inv_f, "sum_f": cfg.softmax_sum_f}
        log = bool(s.attrs.get("log", False))
        self._table(s, "softmax", axis=s.attrs["axis"], log=log, table_bits=int(cfg.table_bits), **sizes)

    def _do_prelu(self, s: Step) -> None:
        """LeakyReLU (a scalar constant slope) or PReLU (its weight, per channel: torch's axis 1)."""
        x, read = self.operand(s.inputs[0], s.node)
        cfg = self.layer_cfg(s.node)
        if "alpha" in s.attrs:
            alpha = self.spec("scalar", (), cfg.constant, s.attrs["alpha"])
        else:
            w = s.module.weight.detach()  # type: ignore[union-attr]
            shape = prelu_shape(w, len(self.t.shapes[s.inputs[0].name]))
            alpha = self._param(w.reshape(shape), cfg.weight, shape)
        self._emit(s, "prelu", [x, alpha])
        self.p.reads[s.node.name] = {0: read, 1: alpha}

    def _pool_mean(self, s: Step, kind: str, **attrs: Any) -> None:
        spec = self.spec("act", self.t.shapes[s.node.name], self.layer_cfg(s.node).activation)
        self._emit(s, kind, [self.env[s.inputs[0].name]], spec=spec, **attrs)
        self.p.produces[s.node.name] = spec
        self.quantized.add(s.node.name)
        self.typed.add(s.node.name)

    def _do_avgpool(self, s: Step) -> None:
        self._pool_mean(s, "avgpool", **s.attrs)

    def _do_global_avgpool(self, s: Step) -> None:
        self._pool_mean(s, "global_avgpool", nd=0)

    def _do_identity(self, s: Step) -> None:
        self.env[s.node.name] = self.env[s.inputs[0].name]

    def _do_dropout(self, s: Step) -> None:
        self._emit(s, "identity", [self.env[s.inputs[0].name]])

    def _do_exact(self, s: Step) -> None:
        """relu, pooling, reshapes, permutes, concatenation: exact, no quantizer."""
        self._emit(s, s.kind, [self.env[a.name] for a in s.inputs], **s.attrs)

    def _binary(self, s: Step) -> None:
        cfg, names, reads = self.layer_cfg(s.node), [], {}
        for n, a in enumerate(s.inputs):
            if isinstance(a, fx.Node) and a.op == "get_attr":
                tensor = self.t.gm.get_parameter(str(a.target)) if _is_param(self.t.gm, a) else None
                tensor = tensor if tensor is not None else self.t.gm.get_buffer(str(a.target))
                other = next(x for x in s.inputs if isinstance(x, fx.Node) and x.op != "get_attr")
                shape = tuple(tensor.shape)
                if len(shape) == len(self.t.shapes[other.name]) + 1:  # [1, ...] spans the batch axis
                    shape = shape[1:]
                reads[n] = spec = self._param(tensor.detach(), cfg.weight, shape)
                names.append(spec)
            elif isinstance(a, fx.Node):
                name, reads[n] = self.operand(a, s.node)
                names.append(name)
            else:
                reads[n] = spec = self.spec("scalar", (), cfg.constant, float(a))
                names.append(spec)
        self._emit(s, s.kind, names)
        self.p.reads[s.node.name] = reads

    _do_add = _do_sub = _do_mul = _do_maximum = _do_minimum = _binary


def _is_param(gm: fx.GraphModule, node: fx.Node) -> bool:
    return str(node.target) in dict(gm.named_parameters())


def prelu_shape(weight: Any, rank: int) -> tuple[int, ...]:
    """PReLU's weight as a constant of the unbatched input's rank: per channel on axis 0
    (torch's axis 1), or one slope for every element."""
    n = int(weight.numel())
    return (n,) + (1,) * (rank - 1) if n > 1 else (1,) * rank
