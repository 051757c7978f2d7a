"""Shim layers without weights: merges (add, subtract, multiply, maximum, minimum, average) and average pooling.

Like the other shim layers they quantize their inputs first and compute what the IR op
computes; see :mod:`hgqir.frontends.keras.shim.layers`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from .layers import conv_pads, make_bank, make_quantizer
from .qmath import ceil_log2, exp2
from .quant import Quantizer


# ---------------------------------------------------------------- merges
def _interval(k: Any, i: Any, f: Any) -> tuple[Any, Any, Any, Any]:
    """Range, LSB exponent and width of a type given as k, i, f tensors (pruned: all 0)."""
    width = k + i + f
    live = width > 0
    lo = ops.where(live, -k * exp2(i), 0.0)
    hi = ops.where(live, exp2(i) - exp2(-f), 0.0)
    return lo, hi, ops.where(live, f, -1e6), ops.relu(width)


def _covering(lo: Any, hi: Any, f: Any) -> tuple[Any, Any, Any]:
    """k, i, f of the smallest type holding [lo, hi] with LSB 2**-f (as FixedType.covering)."""
    zero = ops.logical_and(lo == 0, hi == 0)
    f = ops.where(zero, 0.0, f)
    k = ops.cast(lo < 0, lo.dtype)
    top = ops.maximum(hi + exp2(-f), ops.where(k > 0, -lo, 0.0))
    i = ceil_log2(ops.where(zero, 1.0, top))
    return ops.where(zero, 0.0, k), ops.where(zero, 0.0, i), f


@keras.saving.register_keras_serializable(package="hgqir")
class QMerge(keras.layers.Layer):
    """Add, subtract, multiply, maximum, minimum (left to right for more than two) or average
    (the sum times ``1/n``, ``n`` a power of two) of quantized inputs."""

    OPS = ("add", "sub", "mul", "max", "min", "avg")

    def __init__(self, op: str, n_inputs: int = 2, iqs: list[dict] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if op not in self.OPS:
            raise ValueError(f"QMerge op must be one of {self.OPS}, got {op!r}")
        self.op, self.n_inputs = op, int(n_inputs)
        cfgs = iqs or [None] * self.n_inputs
        self.iqs = [make_quantizer(Quantizer, c, f"{self.name}_iq{n}") for n, c in enumerate(cfgs)]
        self.fbank = make_bank(self.name, self.iqs)

    def build(self, input_shape: Any) -> None:
        for q, shape in zip(self.iqs, input_shape, strict=True):
            q.build(shape)
        self.fbank.attach(self.iqs)

    def _combine(self, a: Any, b: Any) -> Any:
        if self.op in ("add", "avg"):
            return a + b
        if self.op == "max":
            return ops.maximum(a, b)
        if self.op == "min":
            return ops.minimum(a, b)
        return a - b if self.op == "sub" else a * b

    def call(self, xs: Any, training: Any = None) -> Any:
        fs = self.fbank.split(training)
        qs = [q(x, training=training, f=f) for q, x, f in zip(self.iqs, xs, fs, strict=True)]
        y = qs[0]
        for v in qs[1:]:
            y = self._combine(y, v)
        if self.op == "avg":
            y = y * (1.0 / len(qs))  # exact: a power-of-two count
        if training:
            self.ebops_now = self.ebops(train=True, fs=fs)
        return y

    def compute_output_shape(self, input_shape: Any) -> Any:
        dims = [tuple(s[1:]) for s in input_shape]
        return (input_shape[0][0], *np.broadcast_shapes(*dims))

    def ebops(self, dtype: Any = None, train: bool = False, fs: list[Any] | None = None) -> Any:
        """IR rules per binary step: add/sub max(bits), mul bits*bits; chained steps use exact types.

        ``fs``: the quantizers' rounded fractional bits as unpacked by the bank (training).
        """
        dtype = dtype or self.compute_dtype
        fs = fs or [None] * len(self.iqs)
        kifs = [
            tuple(ops.cast(ops.broadcast_to(t, q.shape), dtype) for t in q.kif(train, f))
            for q, f in zip(self.iqs, fs, strict=True)
        ]
        total = ops.zeros((), dtype)
        acc = _interval(*kifs[0])
        for n, kif in enumerate(kifs[1:]):
            nxt = _interval(*kif)
            cost = acc[3] * nxt[3] if self.op == "mul" else ops.maximum(acc[3], nxt[3])
            total = total + ops.sum(cost)
            if n + 2 < len(kifs) or self.op == "avg":
                acc = _interval(*[ops.stop_gradient(t) for t in _covering(*self._step(acc, nxt))])
        if self.op == "avg":  # the sum times the one-bit constant 1/n: bits(sum) * 1
            total = total + ops.sum(acc[3])
        return total

    def _step(self, a: tuple, b: tuple) -> tuple[Any, Any, Any]:
        if self.op in ("add", "avg"):
            return a[0] + b[0], a[1] + b[1], ops.maximum(a[2], b[2])
        if self.op in ("max", "min"):
            pick = ops.maximum if self.op == "max" else ops.minimum
            return pick(a[0], b[0]), pick(a[1], b[1]), ops.maximum(a[2], b[2])
        if self.op == "sub":
            return a[0] - b[1], a[1] - b[0], ops.maximum(a[2], b[2])
        cands = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
        lo = ops.minimum(ops.minimum(cands[0], cands[1]), ops.minimum(cands[2], cands[3]))
        hi = ops.maximum(ops.maximum(cands[0], cands[1]), ops.maximum(cands[2], cands[3]))
        return lo, hi, a[2] + b[2]

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(op=self.op, n_inputs=self.n_inputs, iqs=[q.get_config() for q in self.iqs])
        return cfg


# ---------------------------------------------------------------- average pooling
def pool_counts(shape: tuple[int, ...], pool: tuple[int, ...], strides: tuple[int, ...], padding: str) -> np.ndarray:
    """Number of real (unpadded) inputs in each window, shape ``[*out_spatial]``."""
    counts = []
    for size, p, s in zip(shape, pool, strides, strict=True):
        before, after = conv_pads(size, p, s, padding)
        n_out = (size + before + after - p) // s + 1
        starts = np.arange(n_out) * s - before
        counts.append(np.minimum(starts + p, size) - np.maximum(starts, 0))
    grid = counts[0]
    for c in counts[1:]:
        grid = np.multiply.outer(grid, c)
    return np.asarray(grid, dtype=np.int64)


@keras.saving.register_keras_serializable(package="hgqir")
class QAvgPool(keras.layers.Layer):
    """Average pooling (windowed or global) of a quantized input, truncated like the IR op.

    The result has the input's union type with ``ceil(log2(n))`` more fractional bits, ``n``
    the largest window count; with power-of-two windows nothing is lost.
    """

    def __init__(
        self,
        rank: int,
        pool_size: Any = None,
        strides: Any = None,
        padding: str = "valid",
        is_global: bool = False,
        iq: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rank, self.is_global, self.padding = int(rank), bool(is_global), padding
        self.pool_size = tuple(pool_size) if pool_size is not None else None
        self.strides = tuple(strides) if strides is not None else self.pool_size
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        spatial = tuple(int(d) for d in input_shape[1:-1])
        if self.is_global:
            self.counts = np.array(math.prod(spatial), dtype=np.int64)
        else:
            self.counts = pool_counts(spatial, self.pool_size, self.strides, self.padding)
        self.extra = int(math.ceil(math.log2(max(int(self.counts.max()), 1))))

    def _pool(self, x: Any) -> Any:
        if self.is_global:
            return ops.mean(x, axis=tuple(range(1, self.rank + 1)))
        return ops.average_pool(x, self.pool_size, self.strides, self.padding)

    def union_f(self) -> Any:
        """Largest fractional bits over the input quantizer's live elements (0 if none is live)."""
        k, i, f = (ops.stop_gradient(ops.broadcast_to(t, self.iq.shape)) for t in self.iq.kif())
        live = k + i + f > 0
        return ops.where(ops.any(live), ops.max(ops.where(live, f, -1e6)), 0.0)

    def call(self, x: Any, training: Any = None) -> Any:
        xq = self.iq(x, training=training)
        avg = self._pool(xq)
        if training:
            return avg
        fu = self.union_f()
        counts = ops.cast(ops.convert_to_tensor(self.counts[..., None]), avg.dtype)
        num = ops.round(avg * counts * exp2(fu)) * float(2**self.extra)
        q = ops.floor(num / counts)
        # exact floor division even if a graph optimizer turns / into * reciprocal
        q = ops.where((q + 1.0) * counts <= num, q + 1.0, ops.where(q * counts > num, q - 1.0, q))
        return q * exp2(-(fu + self.extra))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            rank=self.rank,
            pool_size=self.pool_size,
            strides=self.strides,
            padding=self.padding,
            is_global=self.is_global,
            iq=self.iq.get_config(),
        )
        return cfg


@keras.saving.register_keras_serializable(package="hgqir")
class QOutput(keras.layers.Layer):
    """The quantizer of a model output (the ``output`` place): one banked input quantizer.

    It computes nothing, so it has no EBOPs; its fractional bits live in the model's pooled
    bank like every shim layer's (a standalone :class:`Quantizer` would add a variable).
    """

    def __init__(self, iq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.fbank = make_bank(self.name, [self.iq])

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        self.fbank.attach([self.iq])

    def call(self, x: Any, training: Any = None) -> Any:
        (f,) = self.fbank.split(training)
        return self.iq(x, training=training, f=f)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "iq": self.iq.get_config()}
