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

from ..shim.qmath import read


class BankHome:
    """Where a bank's values live: a variable and the position of the bank's first element in it.

    Pooling (:func:`pool_banks`) moves a bank into the model's variable by changing its home;
    every view follows. A plain object, so that saving does not walk into it.
    """

    def __init__(self, var: keras.Variable, offset: int = 0) -> None:
        self.var, self.offset = var, int(offset)


class BankSlice:
    """The fractional bits of one quantizer: a view into its layer's :class:`ParamBank`."""

    def __init__(self, home: BankHome | keras.Variable, offset: int, shape: tuple[int, ...]) -> None:
        self.home = home if isinstance(home, BankHome) else BankHome(home)
        self.local, self.shape = int(offset), tuple(shape)
        self.size = math.prod(self.shape)

    @property
    def bank(self) -> keras.Variable:
        return self.home.var

    @property
    def offset(self) -> int:
        return self.home.offset + self.local

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


def split_bank(bank: Any, shapes: list[tuple[int, ...]], rounded: bool = False) -> list[Any]:
    """Unpack a flat bank tensor into tensors of ``shapes`` as one op with a one-piece gradient.

    ``rounded=True``: the pieces hold ``floor(b + 0.5)``, the integers the bits stand for, with
    the gradient straight through (the whole bank is rounded in one op, not every piece).
    """
    sizes = [math.prod(s) for s in shapes]
    cuts = list(np.cumsum(sizes)[:-1])

    @ops.custom_gradient
    def fn(b: Any) -> Any:
        if rounded:
            b = ops.floor(b + 0.5)
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
        self._uniform = len(set(self.lo)) == 1 and len(set(self.hi)) == 1
        # per-element bounds, built once (the constraint runs after every optimizer step)
        self._bounds = None if self._uniform else (np.repeat(self.lo, self.sizes), np.repeat(self.hi, self.sizes))

    def __call__(self, w: Any) -> Any:
        if self._uniform:
            return ops.clip(w, self.lo[0], self.hi[0])
        lo, hi = self._bounds  # type: ignore[misc]
        return ops.minimum(ops.maximum(w, ops.cast(lo, w.dtype)), ops.cast(hi, w.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="hgqir")
class ParamBank(keras.layers.Layer):
    """The fractional bits of a layer's quantizers (input, kernel, bias, ...) in one variable.

    The owning layer builds its quantizers with ``banked = True`` (they then create no ``f``)
    and calls :meth:`attach`, which creates the variable (initialized from each quantizer's
    ``f0``, clipped to its ``f_range``) and gives every quantizer a :class:`BankSlice` as ``f``.
    A :class:`~hgqir.frontends.keras.shim.model.ShimModel` then pools the banks of all its layers into
    one model variable (:func:`pool_banks`): ``f`` becomes a view too, and the model hands each
    bank its unpacked pieces for a training call (:attr:`pending`).
    """

    def attach(self, quantizers: list[Any]) -> None:
        shapes = [tuple(q.f_shape) for q in quantizers]
        self.shapes = shapes
        sizes = [math.prod(s) for s in shapes]
        init = np.concatenate([np.full(n, q.f0, dtype=np.float64) for q, n in zip(quantizers, sizes, strict=True)])
        self.clip = BankClip([q.f_range[0] for q in quantizers], [q.f_range[1] for q in quantizers], sizes)
        self.f: Any = self.add_weight(
            name="f",
            shape=(int(init.size),),
            initializer=lambda shape, dtype=None: ops.cast(init, dtype),
            constraint=self.clip,
        )
        self.home = BankHome(self.f)
        offset = 0
        for q, shape, n in zip(quantizers, shapes, sizes, strict=True):
            q.f = BankSlice(self.home, offset, shape)
            offset += n
        self.pending: list[Any] | None = None
        self.built = True

    @property
    def size(self) -> int:
        return int(sum(math.prod(s) for s in self.shapes))

    def adopt(self, var: keras.Variable, offset: int) -> None:
        """Keep this bank's values in ``var`` from ``offset`` on (current values copied; own variable dropped)."""
        own = self.f
        BankSlice(var, offset, (self.size,)).assign(read(own))
        self._untrack_variable(own)
        self.home.var, self.home.offset = var, int(offset)
        self.f = BankSlice(self.home, 0, (self.size,))

    def split(self, training: Any) -> list[Any]:
        """Training: every quantizer's rounded ``f`` (gradient straight through), from the pieces
        the model unpacked or from one read and one op; otherwise ``None`` each (the quantizers
        then read their views)."""
        if not training:
            return [None] * len(self.shapes)
        if self.pending is not None:
            return self.pending
        return split_bank(read(self.f), self.shapes, rounded=True)

    def save_own_variables(self, store: Any) -> None:
        store["0"] = self.f.numpy()

    def load_own_variables(self, store: Any) -> None:
        if len(store.keys()) == 0:  # saved before banks existed: the quantizers hold ``f``
            return
        if len(store.keys()) != 1:
            raise ValueError(f"bank {self.name!r} expects 1 saved variable, the file has {len(store.keys())}")
        self.f.assign(store["0"])


def pool_banks(owner: keras.layers.Layer, banks: list[ParamBank]) -> keras.Variable | None:
    """One trainable variable of ``owner`` holding the values of all ``banks`` (each then adopts its stretch).

    Fewer variables, fewer optimizer ops: each bank's own variable is dropped. Saved files are
    unchanged: every bank still saves and loads its own stretch.
    """
    if not banks:
        return None
    init = np.concatenate([np.asarray(b.f.numpy(), dtype=np.float64) for b in banks])
    clips = [b.clip for b in banks]
    clip = BankClip(sum((c.lo for c in clips), []), sum((c.hi for c in clips), []), sum((c.sizes for c in clips), []))
    var = owner.add_weight(
        name="fbank",
        shape=(int(init.size),),
        initializer=lambda shape, dtype=None: ops.cast(init, dtype),
        constraint=clip,
    )
    offset = 0
    for b in banks:
        b.adopt(var, offset)
        offset += b.size
    return var
