"""Import a plain float PyTorch module straight into an hgqir graph (no training shim is built).

Quantizers sit where a shim would put them (:mod:`.place`) with the initial types of
:class:`~hgqir.ShimConfig`: weights, biases and other constants rounded to their ``f`` with
the integer bits their values need; activations at ``f`` with the integer bits of their range on
the calibration data, recorded exactly in float64 while running the module with every
quantizer in place (rounding only, as a shim calibrates). How a range becomes a type, and with
which overflow, is :data:`POLICY` (:class:`CalibrationPolicy`), the one place to change it.
A :class:`PlainImportWarning` says what was chosen.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from hgqir.fixed import OverflowMode, RoundMode
from hgqir.ir import Graph

from ... import calibration
from ...calibration import GUARD_BITS
from ..options import QuantizerConfig, ShimConfig
from ..shim.quant import group_ki, needed_ki, quantize_exact, round_exact
from ..shim.quantizers import AvgPoolQuantizer, fold_batchnorm, prelu
from ..tables import FUNCTIONS, lut_out_kif
from .convert import Converter
from .place import Placement, Placer
from .records import Types, may_be_negative
from .trace import analyse

Tensor = torch.Tensor


_BINARY_TORCH = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}


class PlainImportWarning(UserWarning):
    """A plain float module was imported with initial types (see the message)."""


@dataclass(frozen=True)
class CalibrationPolicy:
    """How an activation's calibration range becomes its type on plain import."""

    margin_bits: int = 0
    """Integer bits above what the calibration range needs (0: exactly the range)."""
    overflow: OverflowMode | None = None
    """Overflow of activation quantizers; None: the config's (WRAP by default)."""

    def activation(self, config: QuantizerConfig) -> QuantizerConfig:
        """The config an activation quantizer is imported with."""
        return config if self.overflow is None else replace(config, overflow=self.overflow)

    def ki(self, lo: Tensor, hi: Tensor, f: Tensor, signed: bool | None) -> tuple[Tensor, Tensor]:
        """Sign and integer bits for values seen in ``[lo, hi]`` at ``f`` fractional bits."""
        k, i = needed_ki(lo, hi, f)
        live = (k + i + f) > 0  # elements that stayed zero stay pruned
        if signed is not None:
            k = torch.full_like(k, float(signed))
        return k, i + self.margin_bits * live.to(i.dtype)


POLICY = CalibrationPolicy(margin_bits=GUARD_BITS)
"""The plain-import policy: one guard integer bit above the calibration range, with the config's
overflow (WRAP): chosen by measurement, see :mod:`hgqir.frontends.calibration`."""


def import_plain(module: Any, example: Any, data: Any, cfg: ShimConfig, name: str, batch_size: int = 1024) -> Graph:
    """The graph of a float module quantized as described in the module docstring."""
    cfg = _with_policy(cfg)
    traced = analyse(copy.deepcopy(module), example)
    placement = Placer(traced, cfg).run()
    gm = traced.gm.double().eval()
    consts = _constants(placement, gm)
    _round_weights(gm, traced, placement, consts)
    calib = _Calibrator(gm, placement, consts)
    samples = 0
    with torch.no_grad():
        for batch in _batches(data, batch_size):
            calib.run(*(b.to(torch.float64) for b in batch))
            samples += int(batch[0].shape[0])
    types = _types(placement, consts, calib)
    _warn(name, cfg, samples)
    return Converter(placement.records, placement.outputs, types, name).run()


def _with_policy(cfg: ShimConfig) -> ShimConfig:
    places = {p: POLICY.activation(getattr(cfg, p)) for p in ("input", "activation")}
    output = None if cfg.output is None else POLICY.activation(cfg.output)
    return replace(cfg, **places, output=output)


def _batches(data: Any, batch_size: int) -> Iterator[tuple[Tensor, ...]]:
    items = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    tensors = [d if isinstance(d, Tensor) else torch.as_tensor(np.asarray(d)) for d in items]
    for start in range(0, int(tensors[0].shape[0]), batch_size):
        yield tuple(t[start : start + batch_size] for t in tensors)


def _f(config: QuantizerConfig) -> float:
    return float(round(config.f))


def _constants(p: Placement, gm: fx.GraphModule) -> dict[int, Tensor]:
    """Every constant quantizer's value, rounded exactly in float64 (its own shape)."""
    out: dict[int, Tensor] = {}
    for n, q in enumerate(p.quantizers):
        f = torch.tensor(_f(q.config), dtype=torch.float64)
        if q.role == "param":
            out[n] = round_exact(q.source.to(torch.float64), f, q.config.round)
        elif q.role == "scalar":
            out[n] = round_exact(torch.tensor(q.source, dtype=torch.float64), f, q.config.round)
        elif q.role in ("bn_scale", "bn_offset"):
            scale, offset = fold_batchnorm(q.source, torch.float64)
            out[n] = round_exact(scale if q.role == "bn_scale" else offset, f, q.config.round)
    return out


def _round_weights(gm: fx.GraphModule, traced: Any, p: Placement, consts: dict[int, Tensor]) -> None:
    """Put the rounded weights and biases into the float64 copy the calibration runs."""
    with torch.no_grad():
        for s in traced.steps:
            if s.kind in ("linear", "conv"):
                layer = gm.get_submodule(str(s.node.target))
                rec = p.records[s.node.name]
                layer.weight.copy_(consts[rec.attrs["w"]])
                if rec.attrs["b"] is not None:
                    layer.bias.copy_(consts[rec.attrs["b"]])


class _Calibrator(fx.Interpreter):
    """Runs the float64 module with every quantizer in place (rounding, no overflow) and records
    the per-element range of every activation quantizer."""

    def __init__(self, gm: fx.GraphModule, p: Placement, consts: dict[int, Tensor]) -> None:
        super().__init__(gm)
        self.p, self.consts = p, consts
        self.kinds = {name: rec.kind for name, rec in p.records.items()}
        self.lo: dict[int, Tensor] = {}
        self.hi: dict[int, Tensor] = {}
        self._cache: dict[tuple[str, int], Tensor] = {}
        self._outputs: dict[str, Any] = {}

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self._cache, self._outputs = {}, {}
        out = super().run(*args, **kwargs)
        for node in self.module.graph.nodes:
            if node.op == "output":
                for o in _flat(node.args[0]):
                    if o.name in self.p.output_spec:
                        self.quantize(self.env_value(o), self.p.output_spec[o.name], o.name)
        return out

    def env_value(self, node: fx.Node) -> Tensor:
        return self._outputs[node.name]

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        out = self._special(n, args)
        if out is None:
            out = getattr(self, n.op)(n.target, args, kwargs)
        if n.name in self.p.produces and n.op == "placeholder":
            out = self.quantize(out, self.p.produces[n.name], n.name)
        self._outputs[n.name] = out
        return out

    def _special(self, n: fx.Node, args: tuple[Any, ...]) -> Tensor | None:
        kind, reads = self.kinds.get(n.name), self.p.reads.get(n.name)
        if kind in ("avgpool", "global_avgpool"):
            return self.quantize(self._mean(n, args[0]), self.p.produces[n.name], n.name, RoundMode.TRN)
        if not reads:
            return None
        if kind == "prelu":  # the slope is not an fx argument of nn.LeakyReLU / nn.PReLU
            xq = self._read(n, 0, args[0], reads[0])
            return prelu(xq, self.consts[reads[1]])
        ops = [self._read(n, k, a, reads.get(k, -1)) for k, a in enumerate(args)]
        rec = self.p.records[n.name]
        if kind == "batchnorm":
            view = (-1,) + (1,) * (ops[0].dim() - 2)
            return ops[0] * self.consts[rec.attrs["scale"]].view(view) + self.consts[rec.attrs["offset"]].view(view)
        if kind == "lut":
            func = rec.attrs["func"]
            k, i, f = (torch.tensor(float(v), dtype=torch.float64) for v in lut_out_kif(func, rec.attrs["out_f"]))
            y = torch.from_numpy(FUNCTIONS[func](ops[0].numpy()))
            return quantize_exact(y, k, i, f, RoundMode.RND, OverflowMode.SAT)
        if kind == "softmax":
            fn = torch.log_softmax if rec.attrs.get("log", False) else torch.softmax
            return fn(ops[0], dim=rec.attrs["axis"] + 1)
        if kind in _BINARY_TORCH:
            fn = _BINARY_TORCH[kind]
            if len(ops) == 1:  # a module with its constant inside (nn.Threshold): the quantized constant
                ops.append(self.consts[reads[1]])
            return fn(ops[0], ops[1])
        return self.module.get_submodule(str(n.target))(ops[0])  # linear, conv

    def _read(self, n: fx.Node, at: int, value: Any, spec: int) -> Any:
        """Operand ``at`` of ``n`` as ``n`` reads it: quantized, or the rounded constant."""
        if spec < 0:
            return value
        if self.p.quantizers[spec].role != "act":
            return self.consts[spec]
        source = n.args[at]
        return self.quantize(value, spec, source.name if isinstance(source, fx.Node) else n.name)

    def _mean(self, n: fx.Node, x: Tensor) -> Tensor:
        a = self.p.records[n.name].attrs
        keys = ("kernel", "stride", "pads", "count_pad")
        pool = AvgPoolQuantizer((1,), QuantizerConfig(), n.name, a["nd"], **{k: a[k] for k in keys if k in a})
        return pool.mean(x)

    def quantize(self, x: Tensor, spec: int, key: str, mode: RoundMode | None = None) -> Tensor:
        """Round ``x`` for an activation quantizer (no overflow) and fold it into its range."""
        if (key, spec) in self._cache:
            return self._cache[(key, spec)]
        config = self.p.quantizers[spec].config
        q = round_exact(x, torch.tensor(_f(config), dtype=x.dtype), mode or config.round)
        lo, hi = q.amin(dim=0), q.amax(dim=0)
        self.lo[spec] = torch.minimum(self.lo[spec], lo) if spec in self.lo else lo
        self.hi[spec] = torch.maximum(self.hi[spec], hi) if spec in self.hi else hi
        self._cache[(key, spec)] = q
        return q


def _flat(arg: Any) -> list[fx.Node]:
    if isinstance(arg, (tuple, list)):
        return [n for a in arg for n in _flat(a)]
    return [arg] if isinstance(arg, fx.Node) else []


def _group(shape: tuple[int, ...], config: QuantizerConfig) -> tuple[int, ...]:
    """Group shape of a quantizer (as the shim's :class:`~..shim.bank.QSpec`)."""
    g = config.granularity.value
    if g == "element" or not shape:
        return shape
    if g == "channel":
        return (shape[0],) + (1,) * (len(shape) - 1)
    return (1,) * len(shape)


def _types(p: Placement, consts: dict[int, Tensor], calib: _Calibrator) -> Types:
    """``k``, ``i``, ``f`` (and constant values) of every quantizer, in its shape."""
    out: Types = {}
    negative = may_be_negative(p.records, lambda n: p.quantizers[n].role == "act")
    for n, q in enumerate(p.quantizers):
        group = _group(q.shape, q.config)
        f = torch.full(group, _f(q.config), dtype=torch.float64)
        if q.role == "act":
            lo, hi = calib.lo.get(n), calib.hi.get(n)
            if lo is None or hi is None:  # never reached: nothing to hold
                lo, hi = (
                    torch.full(q.shape, math.inf, dtype=torch.float64),
                    torch.full(q.shape, -math.inf, dtype=torch.float64),
                )
            dims = [d for d, size in enumerate(group) if size == 1 and q.shape[d] != 1]
            lo = lo.amin(dim=dims, keepdim=True) if dims else lo
            hi = hi.amax(dim=dims, keepdim=True) if dims else hi
            signed = q.config.signed
            if signed is None and POLICY.margin_bits and calibration.SIGN_GUARD and n in negative:
                signed = True  # the guard covers the sign too (see hgqir.frontends.calibration)
            k, i = POLICY.ki(lo, hi, f, signed)
            values = None
        else:
            values = consts[n].reshape(q.shape)
            k, i = group_ki(values, group, f)
        arrs = [np.broadcast_to(a.numpy().astype(np.int64), q.shape).copy() for a in (k, i, f)]
        out[n] = (arrs[0], arrs[1], arrs[2], None if values is None else values.numpy().copy())
    return out


def _warn(name: str, cfg: ShimConfig, samples: int) -> None:
    c = cfg
    warnings.warn(
        f"hgqir: {name} is a plain float module: imported with ShimConfig's initial types (input f={c.input.f:g}, "
        f"weights f={c.weight.f:g}, biases f={c.bias.f:g}, activations f={c.activation.f:g}, constants "
        f"f={c.constant.f:g}; {c.activation.round.name} rounding; integer bits from the range of {samples} "
        f"calibration samples plus {POLICY.margin_bits} guard bit(s), {c.activation.overflow.name} overflow: values "
        f"beyond that {'wrap' if c.activation.overflow is OverflowMode.WRAP else 'saturate'}). Give representative "
        "calibration= data, change the types with the options of quantize_torch, or train a shim "
        "(hgqir.quantize_torch) for learned types.",
        PlainImportWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside hgqir (the user's call of ``from_torch``)."""
    from hgqir import errors as core

    frontends = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    roots = (os.path.dirname(os.path.abspath(core.__file__ or "")) + os.sep, frontends + os.sep)
    level, frame = 1, inspect.currentframe()
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(roots):
        frame, level = frame.f_back, level + 1
    return level - 1
