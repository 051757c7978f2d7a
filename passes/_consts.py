"""Exact helpers for constants: integer mantissas, minimal types, new const ops.

A constant element is ``m * 2**-f`` with an integer mantissa ``m``. The helpers here keep
mantissas as int64 while they provably fit and switch to Python ints (object arrays) beyond.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType
from hgqir.ir import Graph, Op, OpKind, Value

INT_SAFE_BITS = 62
"""int64 mantissas are used while every magnitude stays below ``2**INT_SAFE_BITS``."""


def is_const(v: Value) -> bool:
    """True when ``v`` is the result of a ``const`` op."""
    return v.producer is not None and v.producer.kind is OpKind.CONST


def mantissas(v: Value) -> tuple[np.ndarray, np.ndarray]:
    """Per-element mantissas and fractional bits of a const value (pruned elements are 0)."""
    op = v.producer
    assert op is not None and op.kind is OpKind.CONST
    t = v.type
    data = np.asarray(op.attrs["data"])
    live = ~t.zero_mask
    m = np.where(live, data, 0) if data.dtype != object else _where_obj(live, data)
    return m, np.broadcast_to(np.asarray(t.f), t.shape)


def _where_obj(mask: np.ndarray, data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[~mask] = 0
    return out


def bit_length(m: np.ndarray) -> np.ndarray:
    """Exact ``int.bit_length`` of non-negative integer mantissas, elementwise (int64 result)."""
    if m.dtype == object:
        flat = [int(v).bit_length() for v in m.reshape(-1)]
        return np.array(flat, dtype=np.int64).reshape(m.shape)
    m = m.astype(np.int64)
    e = np.frexp(m.astype(np.float64))[1].astype(np.int64)
    # float64 may round a large m up to the next power of two: step back where it did
    too_big = (e > 0) & (np.right_shift(m, np.maximum(e - 1, 0)) == 0)
    return np.where(too_big, e - 1, e)


def trailing_zeros(m: np.ndarray) -> np.ndarray:
    """Number of trailing zero bits of each non-zero integer mantissa (0 for zeros)."""
    if m.dtype == object:
        flat = [(abs(int(v)) & -abs(int(v))).bit_length() - 1 if v else 0 for v in m.reshape(-1)]
        return np.array(flat, dtype=np.int64).reshape(m.shape)
    m = np.abs(m.astype(np.int64))
    low = m & -m
    return np.where(m == 0, 0, bit_length(low) - 1)


def minimal_const(m: np.ndarray, f: Any) -> tuple[np.ndarray, FixedType]:
    """Mantissas and the smallest per-element type holding exactly the values ``m * 2**-f``.

    Trailing zero bits move into ``f``; the sign bit is used only by negative values; zeros
    become pruned elements.
    """
    m = np.asarray(m)
    f = np.broadcast_to(np.asarray(f, dtype=np.int64), m.shape)
    tz = trailing_zeros(m)
    if m.dtype == object:
        m = np.array(
            [int(v) >> int(s) for v, s in zip(m.reshape(-1), tz.reshape(-1), strict=True)], dtype=object
        ).reshape(m.shape)
    else:
        m = np.right_shift(m.astype(np.int64), tz)
    f = f - tz
    neg = m < 0
    mag = np.where(neg, -m - 1, m)
    need = bit_length(mag if m.dtype != object else mag.astype(object))
    zero = m == 0
    k = np.where(zero, 0, neg.astype(np.int64))
    i = np.where(zero, 0, need - f)
    f = np.where(zero, 0, f)
    t = FixedType(m.shape, k, i, f).canonical()
    return fit_dtype(m), t


def fit_dtype(m: np.ndarray) -> np.ndarray:
    """int64 mantissas when they fit, else Python ints."""
    if m.dtype != object:
        return m.astype(np.int64)
    top = max((abs(int(v)) for v in m.reshape(-1)), default=0)
    return m.astype(np.int64) if top.bit_length() <= INT_SAFE_BITS else m


def align(m: np.ndarray, f: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Mantissas ``m`` (at ``f``) re-expressed at ``to >= f`` fractional bits, as Python ints."""
    shift = np.broadcast_to(np.asarray(to - f), np.shape(m))
    m = np.asarray(m).astype(object)
    return np.array(
        [int(v) << int(s) for v, s in zip(m.reshape(-1), shift.reshape(-1), strict=True)], dtype=object
    ).reshape(np.shape(m))


def add_const(g: Graph, data: np.ndarray, t: FixedType, name: str, before: Op) -> Value:
    """A new const op placed before ``before`` (named after ``name``)."""
    return g.const_mantissa(data, t, name=name, before=before)


def slice_const(g: Graph, v: Value, index: Any, before: Op) -> Value:
    """A new const holding ``v[index]`` (data and type sliced alike)."""
    data = np.asarray(v.producer.attrs["data"])[index]  # type: ignore[union-attr]
    return g.const_mantissa(np.ascontiguousarray(data), v.type[index], name=v.name, before=before)


_OPEN: set[int] = set()
"""Graphs (by id) inside a transaction: a nested one shares the outer snapshot."""


@contextlib.contextmanager
def atomic(g: Graph, what: str | None) -> Iterator[None]:
    """The one rollback policy of the passes: undo every change to ``g`` if the block raises.

    One snapshot per transaction (``Graph.clone`` shares constant data and types with ``g``);
    a transaction inside another one (a pass run by the :class:`PassManager`, which opens one
    per pass) takes no snapshot of its own. Errors other than :class:`HgqirError` are wrapped
    with ``what`` (None: left as they are, for a caller that names them itself); rewrites inside loops name their op with :func:`at`, which copies nothing.
    """
    if id(g) in _OPEN:
        with _named(what):
            yield
        return
    snapshot = g.clone()
    _OPEN.add(id(g))
    try:
        with _named(what):
            yield
    except Exception:
        g.restore(snapshot)
        raise
    finally:
        _OPEN.discard(id(g))


@contextlib.contextmanager
def _named(what: str | None) -> Iterator[None]:
    try:
        yield
    except HgqirError:
        raise
    except Exception as e:
        if what is None:
            raise
        raise HgqirError(f"{what} failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def at(what: str, op: Op) -> Iterator[None]:
    """Name ``what`` and ``op`` in any error the block raises (no snapshot: see :func:`atomic`)."""
    try:
        yield
    except Exception as e:
        raise HgqirError(f"{what} failed at {op!r}: {type(e).__name__}: {e}") from e
