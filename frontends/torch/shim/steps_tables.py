"""Shim steps of the table activations (sigmoid, tanh, the smooth functions, softmax and
log_softmax) and of prelu (LeakyReLU, PReLU): methods of the shim builder (:mod:`.build`),
kept here so that each module stays readable. ``self`` is the builder."""

from __future__ import annotations

from typing import Any

import torch

from ..importer.place import prelu_shape
from ..importer.records import Rec
from ..importer.trace import Step
from ..options import QuantizerConfig
from .ebops import CostTerm
from .quantizers import SoftmaxQuantizer, TableQuantizer, prelu


def table(self: Any, s: Step, make: Any, kind: str, **attrs: Any) -> None:
    x = self.env[s.inputs[0].name]
    shape = self._shape(s.inputs[0].name)
    rec = Rec(kind, [x.name], dict(attrs), self._shape(s.node.name))
    config = self.layer_cfg(s.node).activation
    node = self._act(x, shape, config, f"{s.node.name}", make=lambda g, n: make(g, config), record=rec)
    rec.attrs["spec"] = self.quantized.pop(node.name)
    rec.attrs["module"] = node.target
    self.env[s.node.name] = node


def do_sigmoid(self: Any, s: Step) -> None:
    self._lut(s, "sigmoid")


def do_tanh(self: Any, s: Step) -> None:
    self._lut(s, "tanh")


def do_table(self: Any, s: Step) -> None:
    self._lut(s, s.attrs["func"])


def lut(self: Any, s: Step, func: str) -> None:
    cfg = self.cfg
    table = {"out_f": int(cfg.table_f), "table_bits": int(cfg.table_bits)}

    def make(g: tuple[int, ...], config: QuantizerConfig) -> TableQuantizer:
        return TableQuantizer(g, config, s.node.name, func, **table)

    self._table(s, make, "lut", func=func, **table)


def do_softmax(self: Any, s: Step) -> None:
    cfg, axis = self.cfg, s.attrs["axis"]
    table = {
        "exp_f": int(cfg.softmax_exp_f),
        "inv_f": int(cfg.softmax_inv_f),
        "sum_f": int(cfg.softmax_sum_f),
        "table_bits": int(cfg.table_bits),
        "log": bool(s.attrs.get("log", False)),
    }

    def make(g: tuple[int, ...], config: QuantizerConfig) -> SoftmaxQuantizer:
        return SoftmaxQuantizer(g, config, s.node.name, axis, **table)

    self._table(s, make, "softmax", axis=axis, **table)


def do_prelu(self: Any, s: Step) -> None:
    x = self._quantized(s.inputs[0], s.node)
    cfg = self.layer_cfg(s.node)
    if "alpha" in s.attrs:
        spec, alpha = self._param(torch.tensor(s.attrs["alpha"]), f"{s.node.name}_alpha", cfg.constant)
    else:
        w = s.module.weight  # type: ignore[union-attr]
        shape = prelu_shape(w, len(self._shape(s.inputs[0].name)))
        spec, alpha = self._param(w, f"{s.node.target}.weight", cfg.weight, shape)
        alpha = self.g.call_method("reshape", (alpha, shape))  # the bank may hand out the weight's shape
    node = self.g.call_function(prelu, (x, alpha))
    self._emit(s, node, "prelu", [x.name, spec])
    self.costs.append(CostTerm("mul", (self.quantized[x.name], spec)))
