"""Table layers of the Keras shim: unary functions (tanh, sigmoid) and softmax.

In training they apply the float function to the quantized input (straight-through through the
output rounding). In inference they read tables, and those tables are the very arrays the IR's
``lut`` / ``softmax`` ops hold: both come from :func:`lut_table` / :func:`softmax_tables`
here, built in numpy from the input quantizer's current type. The shim keeps its tables in
non-trainable variables that :meth:`refresh` rewrites; :class:`ShimModel` refreshes before
``predict`` / ``evaluate`` and after calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from hgqir.errors import HgqirError
from hgqir.fixed import OverflowMode, RoundMode
from hgqir.ops import make_table
from hgqir.quantize import quantize

from ...activations import SMOOTH_NUMPY, out_kif
from ..support import KERAS_SMOOTH
from .layers import make_quantizer
from .qmath import exp2, quantize_exact, quantize_train
from .quant import Quantizer

KIF = tuple[int, int, int]


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x: Any) -> Any:
    return keras.activations.gelu(x, approximate=False)


TABLE_FUNCTIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[Any], Any], KIF]] = {
    "tanh": (np.tanh, ops.tanh, (1, 0, 8)),
    "sigmoid": (_sigmoid_np, ops.sigmoid, (0, 0, 8)),
    **{
        name: (SMOOTH_NUMPY[func], _gelu if name == "gelu" else getattr(keras.activations, name), out_kif(func, 8))
        for name, func in KERAS_SMOOTH.items()
    },
}
"""name -> (numpy function for tables, Keras function for training, default output k, i, f)."""


def union_kif(q: Quantizer) -> KIF:
    """Union type (max over live elements) of a quantizer's output: the table's index type."""
    return q.fixed_type().union()


def _check_bits(layer: str, bits: int, limit: int) -> None:
    if bits > limit:
        raise HgqirError(
            f"{layer}: the table input is {bits} bits wide, the layer holds tables of {limit} bits; "
            "lower the input quantizer's integer / fractional bits or raise table_bits"
        )


def lut_table(func: str, in_kif: KIF, out_kif: KIF, round: RoundMode, overflow: OverflowMode) -> tuple[np.ndarray, Any]:
    """Integer mantissas and type of the table of ``func`` over every value of ``in_kif``."""
    return make_table(TABLE_FUNCTIONS[func][0], in_kif, out_kif, round=round, overflow=overflow)


def exp_table_length(in_kif: KIF, exp_f: int) -> int:
    """Entries of the exp table: up to the first ``d`` whose exp rounds to 0 (capped by the input span)."""
    k, i, f = in_kif
    span = 1 << max(k + i + f, 0)
    needed = int(math.floor((exp_f + 1) * math.log(2.0) * 2.0**f)) + 2
    return max(1, min(span, needed))


def softmax_tables(in_kif: KIF, n: int, exp_kif: KIF, inv_f: int, inv_kif: KIF, log: bool = False) -> dict[str, Any]:
    """Tables of the IR softmax recipe (see ``hgqir.ops.table``) for inputs of union type ``in_kif``.

    ``log`` (log_softmax): the second table holds ``log(s)`` (``s >= 1``: the largest input's
    ``exp(0) = 1``) with ``inv_kif``'s fractional bits and the integer bits ``log(n)`` needs.
    """
    f = in_kif[2]
    length = exp_table_length(in_kif, exp_kif[2])
    exp_vals = quantize(np.exp(-np.arange(length) * 2.0**-f), *exp_kif, round="RND", overflow="SAT")
    inv_in = (0, max(int(math.ceil(math.log2(n + 1))), 0), inv_f)
    if log:
        inv_kif = (0, max(1, math.ceil(math.log2(math.log(n + 1.0) + 1.0))), inv_kif[2])
        fn = lambda s: np.log(np.maximum(s, 1.0))  # noqa: E731
    else:
        fn = lambda s: 1.0 / np.maximum(s, 2.0**-inv_f)  # noqa: E731
    inv_data, inv_type = make_table(fn, inv_in, inv_kif, "RND", "SAT")
    inv_vals = np.ldexp(inv_data.astype(np.float64), -inv_kif[2])
    return {"exp": exp_vals, "exp_kif": exp_kif, "inv_in": inv_in, "inv": inv_vals, "inv_kif": inv_kif}


class _TableLayer(keras.layers.Layer):
    """Common parts: the input quantizer and table variables."""

    def __init__(self, table_bits: int = 16, iq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table_bits = int(table_bits)
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")

    def _table_var(self, name: str, size: int) -> Any:
        return self.add_weight(name=name, shape=(size,), initializer="zeros", trainable=False)

    def _scalar_var(self, name: str) -> Any:
        return self.add_weight(name=name, shape=(), initializer="zeros", trainable=False)

    @staticmethod
    def _assign_padded(var: Any, values: np.ndarray) -> None:
        full = np.zeros(var.shape, dtype=np.float64)
        full[: len(values)] = values
        var.assign(full.astype(var.dtype))

    def _direct(self, training: Any) -> bool:
        """Float path: training, or calibration (tables are not valid while ranges change)."""
        return bool(training) or self.iq._trace is not None


@keras.saving.register_keras_serializable(package="hgqir")
class QTable(_TableLayer):
    """A unary function (``tanh``, ``sigmoid``, ``elu``, ...) of a quantized input, as the IR ``lut`` op."""

    def __init__(
        self, func: str, out_kif: Any = None, round: str = "RND", overflow: str = "SAT", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if func not in TABLE_FUNCTIONS:
            raise ValueError(f"QTable supports {sorted(TABLE_FUNCTIONS)}, got {func!r}")
        self.func = func
        self.out_kif: KIF = tuple(int(v) for v in (out_kif or TABLE_FUNCTIONS[func][2]))  # type: ignore[assignment]
        self.round_mode, self.overflow_mode = RoundMode.parse(round), OverflowMode.parse(overflow)

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        self.table = self._table_var("table", 1 << self.table_bits)
        self.t_lo, self.t_f = self._scalar_var("t_lo"), self._scalar_var("t_f")

    def call(self, x: Any, training: Any = None) -> Any:
        xq = self.iq(x, training=training)
        if self._direct(training):
            y = TABLE_FUNCTIONS[self.func][1](xq)
            quant = quantize_train if training else quantize_exact
            return quant(y, *(float(v) for v in self.out_kif), self.round_mode, self.overflow_mode)
        idx = ops.round(xq * exp2(self.t_f)) - self.t_lo
        idx = ops.cast(ops.clip(idx, 0, self.table.shape[0] - 1), "int32")
        return ops.take(self.table, idx)

    def table_numpy(self) -> tuple[np.ndarray, Any, KIF]:
        """``(mantissas, table type, input union k, i, f)`` for the current input quantizer."""
        in_kif = union_kif(self.iq)
        _check_bits(self.name, sum(in_kif), self.table_bits)
        data, t = lut_table(self.func, in_kif, self.out_kif, self.round_mode, self.overflow_mode)
        return data, t, in_kif

    def refresh(self) -> None:
        data, _, (k, i, f) = self.table_numpy()
        self._assign_padded(self.table, np.ldexp(data.astype(np.float64), -self.out_kif[2]))
        self.t_lo.assign(float(-k * (1 << max(i + f, 0))))
        self.t_f.assign(float(f))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            func=self.func,
            out_kif=self.out_kif,
            round=self.round_mode.value,
            overflow=self.overflow_mode.value,
            table_bits=self.table_bits,
            iq=self.iq.get_config(),
        )
        return cfg


@keras.saving.register_keras_serializable(package="hgqir")
class QSoftmax(_TableLayer):
    """Softmax (``log``: log_softmax) over the last axis of a quantized input, as the IR ``softmax`` op."""

    def __init__(
        self, exp_kif: Any = (0, 1, 8), inv_f: int = 8, inv_kif: Any = (0, 1, 8), log: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.log = bool(log)
        self.exp_kif: KIF = tuple(int(v) for v in exp_kif)  # type: ignore[assignment]
        self.inv_kif: KIF = tuple(int(v) for v in inv_kif)  # type: ignore[assignment]
        self.inv_f = int(inv_f)

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        self.n = int(input_shape[-1])
        self.inv_bits = max(int(math.ceil(math.log2(self.n + 1))), 0) + self.inv_f
        self.exp_table = self._table_var("exp_table", 1 << self.table_bits)
        self.inv_table = self._table_var("inv_table", 1 << self.inv_bits)
        self.t_len, self.t_f = self._scalar_var("t_len"), self._scalar_var("t_f")

    def call(self, x: Any, training: Any = None) -> Any:
        xq = self.iq(x, training=training)
        if self._direct(training):
            return ops.log_softmax(xq, axis=-1) if self.log else ops.softmax(xq, axis=-1)
        xm = ops.round(xq * exp2(self.t_f))
        d = ops.max(xm, axis=-1, keepdims=True) - xm
        e = ops.take(self.exp_table, ops.cast(ops.minimum(d, self.t_len - 1.0), "int32"))
        s = ops.floor(ops.sum(e, axis=-1, keepdims=True) * float(2**self.inv_f))
        s = ops.clip(s, 0.0, float(self.inv_table.shape[0] - 1))
        r = ops.take(self.inv_table, ops.cast(s, "int32"))
        if self.log:  # (x - max) - log(s), exact: both on their grids
            return -d * exp2(-self.t_f) - r
        return e * r

    def tables(self) -> dict[str, Any]:
        """The recipe's tables for the current input quantizer (shared with the IR import)."""
        in_kif = union_kif(self.iq)
        t = softmax_tables(in_kif, self.n, self.exp_kif, self.inv_f, self.inv_kif, log=self.log)
        _check_bits(self.name, int(math.ceil(math.log2(len(t["exp"])))), self.table_bits)
        t["in_kif"] = in_kif
        return t

    def refresh(self) -> None:
        t = self.tables()
        self._assign_padded(self.exp_table, t["exp"])
        self._assign_padded(self.inv_table, t["inv"])
        self.t_len.assign(float(len(t["exp"])))
        self.t_f.assign(float(t["in_kif"][2]))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            exp_kif=self.exp_kif,
            inv_f=self.inv_f,
            inv_kif=self.inv_kif,
            log=self.log,
            table_bits=self.table_bits,
            iq=self.iq.get_config(),
        )
        return cfg
