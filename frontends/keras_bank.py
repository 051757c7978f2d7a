"""One trainable variable for all fractional bits of a shim layer (fewer optimizer ops per step).

Keras' optimizers update every trainable variable with its own small ops (Adam: about 30
per variable and step, the ``f`` range constraint included), and on TensorFlow each op costs
about a microsecond whatever its size. A dense layer's input, kernel and bias quantizers would
add three variables; :class:`ParamBank` holds their fractional bits in one flat variable
instead, and each quantizer's ``f`` becomes a :class:`BankSlice`, a view with the shape,
``value``, ``assign`` and ``numpy()`` of a variable. In training the layer unpacks the bank once
with :func:`split_bank`, a single custom-gradient op whose backward pass concatenates the
parameter gradients back into one piece (plain slicing would add a full-size gradient per
slice).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from .keras_qmath import read


class BankSlice:
    """The fractional bits of one quantizer: a view into its layer's :class:`ParamBank`."""

    def __init__(self, bank: keras.Variable, offset: int, shape: tuple[int, ...]) -> None:
        self.bank, self.offset, self.shape = bank, int(offset), tuple(shape)
        self.size = math.prod(self.shape)

    @property
    def dtype(self) -> Any:
        return self.bank.dtype

    @property
    def value(self) -> Any:
        """The current values as a tensor of :attr:`shape`."""
        flat = ops.slice(read(self.bank), (self.offset,), (self.size,))
        return ops.reshape(flat, self.shape)

    def numpy(self) -> np.ndarray:
        return np.asarray(ops.convert_to_numpy(self.value))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.numpy() if dtype is None else self.numpy().astype(dtype)

    def assign(self, value: Any) -> None:
        """Set this view's elements (``value`` broadcast to :attr:`shape`); the rest stay."""
        v = ops.reshape(ops.broadcast_to(ops.cast(value, self.dtype), self.shape), (self.size,))
        self.bank.assign(ops.slice_update(read(self.bank), (self.offset,), v))

    def __repr__(self) -> str:
        return f"<BankSlice shape={self.shape} of {self.bank.path}>"


def split_bank(bank: Any, shapes: list[tuple[int, ...]]) -> list[Any]:
    """Unpack a flat bank tensor into tensors of ``shapes`` as one op with a one-piece gradient."""
    sizes = [math.prod(s) for s in shapes]
    cuts = list(np.cumsum(sizes)[:-1])

    @ops.custom_gradient
    def fn(b: Any) -> Any:
        parts = ops.split(b, cuts) if cuts else [b]
        outs = tuple(p if tuple(p.shape) == s else ops.reshape(p, s) for p, s in zip(parts, shapes, strict=True))

        def grad(*args: Any, upstream: Any = None) -> Any:
            gs = args if upstream is None else upstream
            flat = [ops.reshape(g, (n,)) for g, n in zip(gs, sizes, strict=True)]
            return ops.concatenate(flat, axis=0) if len(flat) > 1 else flat[0]

        return outs, grad

    return list(fn(bank))


@keras.saving.register_keras_serializable(package="hgqir")
class BankClip(keras.constraints.Constraint):
    """Clips every quantizer's stretch of a bank to that quantizer's ``f_range``."""

    def __init__(self, lo: list[float], hi: list[float], sizes: list[int]) -> None:
        self.lo, self.hi, self.sizes = [float(v) for v in lo], [float(v) for v in hi], [int(n) for n in sizes]

    def __call__(self, w: Any) -> Any:
        if len(set(self.lo)) == 1 and len(set(self.hi)) == 1:
            return ops.clip(w, self.lo[0], self.hi[0])
        lo = np.repeat(self.lo, self.sizes)
        hi = np.repeat(self.hi, self.sizes)
        return ops.minimum(ops.maximum(w, ops.cast(lo, w.dtype)), ops.cast(hi, w.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="hgqir")
class ParamBank(keras.layers.Layer):
    """The fractional bits of a layer's quantizers (input, kernel, bias, ...) in one variable.

    The owning layer builds its quantizers with ``banked = True`` (they then create no ``f``)
    and calls :meth:`attach`, which creates the variable (initialized from each quantizer's
    ``f0``, clipped to its ``f_range``) and gives every quantizer a :class:`BankSlice` as ``f``.
    """

    def attach(self, quantizers: list[Any]) -> None:
        shapes = [tuple(q.f_shape) for q in quantizers]
        self.shapes = shapes
        sizes = [math.prod(s) for s in shapes]
        init = np.concatenate([np.full(n, q.f0, dtype=np.float64) for q, n in zip(quantizers, sizes, strict=True)])
        clip = BankClip([q.f_range[0] for q in quantizers], [q.f_range[1] for q in quantizers], sizes)
        self.f = self.add_weight(
            name="f",
            shape=(int(init.size),),
            initializer=lambda shape, dtype=None: ops.cast(init, dtype),
            constraint=clip,
        )
        offset = 0
        for q, shape, n in zip(quantizers, shapes, sizes, strict=True):
            q.f = BankSlice(self.f, offset, shape)
            offset += n
        self.built = True

    def split(self, training: Any) -> list[Any]:
        """Training: every quantizer's ``f`` from one read and one op; otherwise ``None`` each
        (the quantizers then read their views)."""
        if not training:
            return [None] * len(self.shapes)
        return split_bank(read(self.f), self.shapes)

    def load_own_variables(self, store: Any) -> None:
        if len(store.keys()) == 0:  # saved before banks existed: the quantizers hold ``f``
            return
        super().load_own_variables(store)
