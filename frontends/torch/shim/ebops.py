"""Differentiable EBOPs of a shim, computed exactly as :mod:`hgqir.passes.bops` counts them.

Every costed op is a bilinear form in the bit counts: dense, conv and batchnorm sum
``bits(x) * bits(w)`` over their multiplications, elementwise mul sums ``bits(a) * bits(b)``;
add and sub sum ``max(bits(a), bits(b))``. All of them are gathered, once, into index arrays
over one flat vector of bit counts (weights per element, activations per group), so one
autograd call computes the total: ``sum_r (A bits)_r * (B bits)_r + sum max(bits[p], bits[q])``.

The vector's layout is :class:`~hgqir.frontends.torch.shim.bits.BitLayout`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .bits import BitLayout, gradient_to_params

Tensor = torch.Tensor


@dataclass
class CostTerm:
    """One costed op of the shim: its kind, the specs of its operands, geometry."""

    kind: str
    """``dense``, ``conv``, ``bn``, ``mul`` or ``add`` (``sub`` counts as ``add``)."""
    specs: tuple[int, int]
    """(input activation spec, weight / scale spec); for mul and add the two operands."""
    attrs: dict[str, Any] = field(default_factory=dict)


def _dense(x: np.ndarray, w: np.ndarray) -> tuple[list[np.ndarray], ...]:
    n_in = w.shape[1]
    rows = np.arange(n_in)
    a = (np.broadcast_to(rows, w.shape).reshape(-1), w.reshape(-1))
    xs = x.reshape(-1, n_in)
    b = (np.broadcast_to(rows, xs.shape).reshape(-1), xs.reshape(-1))
    return a, b


def _conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], pads: tuple[tuple[int, int], ...]) -> tuple[Any, ...]:
    nd = len(stride)
    kernel = w.shape[2:]
    padded = np.pad(x, [(0, 0)] + [tuple(p) for p in pads], constant_values=-1)
    win = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=tuple(range(1, nd + 1)))
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    # win: [ci, *out, *kernel] -> rows (ci, *kernel) x positions
    order = [0] + list(range(nd + 1, 2 * nd + 1)) + list(range(1, nd + 1))
    per_row = win.transpose(order).reshape(int(np.prod(w.shape[1:])), -1)
    rows = np.arange(per_row.shape[0])
    ra, ca = np.broadcast_to(rows, (w.shape[0], rows.size)).reshape(-1), w.reshape(-1)
    a = (ra[ca >= 0], ca[ca >= 0])  # -1: a dilated kernel's gap, no weight
    rb = np.broadcast_to(rows[:, None], per_row.shape).reshape(-1)
    cb = per_row.reshape(-1)
    keep = cb >= 0
    return a, (rb[keep], cb[keep])


def _bn(x: np.ndarray, s: np.ndarray) -> tuple[Any, ...]:
    c = s.shape[0]
    rows = np.arange(c)
    xs = x.reshape(c, -1)
    return (rows, s.reshape(-1)), (np.broadcast_to(rows[:, None], xs.shape).reshape(-1), xs.reshape(-1))


def build_index(layout: BitLayout, terms: list[CostTerm]) -> EbopsIndex:
    """Index arrays of the bilinear and max terms of every costed op."""
    cols, n_bits = layout.columns, layout.size
    ra, ca, rb, cb, ma, mb = [], [], [], [], [], []
    base = 0
    for t in terms:
        x, w = (cols[s] for s in t.specs)
        if t.kind == "add":
            shape = np.broadcast_shapes(x.shape, w.shape)
            ma.append(np.broadcast_to(x, shape).reshape(-1))
            mb.append(np.broadcast_to(w, shape).reshape(-1))
            continue
        (r1, c1), (r2, c2) = _term(t, x, w)
        ra.append(r1 + base)
        ca.append(c1)
        rb.append(r2 + base)
        cb.append(c2)
        base += int(max(r1.max(initial=-1), r2.max(initial=-1))) + 1
    shape = (base, n_bits)
    return EbopsIndex(_csr(_cat(ra), _cat(ca), shape), _csr(_cat(rb), _cat(cb), shape), _cat(ma), _cat(mb))


def _term(t: CostTerm, x: np.ndarray, w: np.ndarray) -> tuple[Any, ...]:
    if t.kind == "dense":
        return _dense(x, w)
    if t.kind == "conv":
        groups = t.attrs.get("groups", 1)
        if groups > 1:  # depthwise: weight [C*M, 1, *k] as [M, C, *k] (output c*M + m reads channel c)
            w = w.reshape(groups, -1, *w.shape[2:]).swapaxes(0, 1)
        if "dilation" in t.attrs:  # the kernel as applied: no weight (-1) between the taps
            rates = t.attrs["dilation"]
            applied = tuple((k - 1) * d + 1 for k, d in zip(w.shape[2:], rates, strict=True))
            full = np.full(w.shape[:2] + applied, -1, w.dtype)
            full[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in rates)] = w
            w = full
        return _conv(x, w, t.attrs["stride"], t.attrs["pads"])
    if t.kind == "bn":
        return _bn(x, w)
    shape = np.broadcast_shapes(x.shape, w.shape)  # mul: one row per output element
    rows = np.arange(int(np.prod(shape)))
    return (rows, np.broadcast_to(x, shape).reshape(-1)), (rows, np.broadcast_to(w, shape).reshape(-1))


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


Csr = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> Csr:
    """CSR ``(crow, col, value, shape)`` of a 0/1 pattern; repeated entries add up."""
    if rows.size:
        pairs, counts = np.unique(np.stack([rows, cols], axis=1), axis=0, return_counts=True)
        rows, cols, vals = pairs[:, 0], pairs[:, 1], counts.astype(np.float64)
    else:
        vals = np.zeros(0)
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.add.at(crow, rows + 1, 1)
    return np.cumsum(crow), cols.astype(np.int64), vals, shape


def _transpose(m: Csr) -> Csr:
    crow, col, val, (r, c) = m
    rows = np.repeat(np.arange(r), np.diff(crow))
    order = np.lexsort((rows, col))
    t_crow = np.zeros(c + 1, dtype=np.int64)
    np.add.at(t_crow, col + 1, 1)
    return np.cumsum(t_crow), rows[order].astype(np.int64), val[order], (c, r)


class EbopsIndex:
    """The sparse matrices and max pairs of a shim's EBOPs, stacked for one product each way.

    ``M = [A; B]`` gives ``[A b; B b]`` in one sparse product, and ``N = [B^T A^T]`` maps that
    straight back to the gradient ``A^T (B b) + B^T (A b)`` in another. Kept out of the module
    state on purpose (DistributedDataParallel broadcasts buffers every step); torch tensors are
    made per dtype and device on first use.
    """

    def __init__(self, a: Csr, b: Csr, ma: np.ndarray, mb: np.ndarray) -> None:
        stacked = _vstack(a, b)
        self.mats = (stacked, _transpose(_vstack(b, a)))
        self.ma, self.mb = ma, mb
        self.rows = a[3][0]
        self._cache: dict[Any, tuple[Tensor, ...]] = {}

    def tensors(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        """``(M, N, ma, mb)`` on ``device`` in ``dtype``."""
        key = (dtype, device)
        if key not in self._cache:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                mats = tuple(
                    torch.sparse_csr_tensor(
                        torch.from_numpy(cr),
                        torch.from_numpy(co),
                        torch.from_numpy(v).to(dtype),
                        size=shape,
                        device=device,
                        check_invariants=False,
                    )
                    for cr, co, v, shape in self.mats
                )
            self._cache[key] = mats + (torch.from_numpy(self.ma).to(device), torch.from_numpy(self.mb).to(device))
        return self._cache[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}


def _vstack(top: Csr, bottom: Csr) -> Csr:
    """CSR of ``[top; bottom]`` (same number of columns)."""
    (c1, k1, v1, (r1, n)), (c2, k2, v2, (r2, _)) = top, bottom
    crow = np.concatenate([c1, c2[1:] + c1[-1]])
    return crow, np.concatenate([k1, k2]), np.concatenate([v1, v2]), (r1 + r2, n)


class RegFn(torch.autograd.Function):
    """``scale * EBOPs + l1 * sum(bits)`` of a shim, as a function of its ``f`` (and ``i``).

    EBOPs ``= sum_r (A b)_r (B b)_r + sum max(b[p], b[q])`` over the bit counts ``b``, which are
    computed without autograd; the backward pass maps ``d/db`` (masked where a width is clipped
    at 0 or a weight is zero) straight onto ``f`` and ``i``: a handful of ops per step.
    """

    @staticmethod
    def forward(ctx: Any, f: Tensor, i: Tensor | None, qmod: Any, scale: float, l1: float) -> Tensor:  # type: ignore[override]
        bits = qmod.bit_counts()
        index: EbopsIndex = qmod.ebops_index
        m, _, ma, mb = index.tensors(bits.dtype, bits.device)
        uv = m @ bits  # [A b; B b]
        r = index.rows
        total = torch.dot(uv[:r], uv[r:])
        first = ma
        if ma.numel():
            pa, pb = bits.index_select(0, ma), bits.index_select(0, mb)
            first = pa >= pb
            total = total + torch.where(first, pa, pb).sum()
        ctx.save_for_backward(bits, uv, first)
        ctx.qmod, ctx.scale, ctx.l1 = qmod, scale, l1
        value = total * scale
        return value + bits.sum() * l1 if l1 else value

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        bits, uv, first = ctx.saved_tensors
        _, n, ma, mb = ctx.qmod.ebops_index.tensors(bits.dtype, bits.device)
        grad = n @ uv  # A^T (B b) + B^T (A b)
        if ma.numel():
            one = first.to(uv.dtype)
            grad = grad.index_add_(0, ma, one).index_add_(0, mb, 1.0 - one)
        grad = grad.mul_(g * ctx.scale)
        if ctx.l1:
            grad = grad.add_(g * ctx.l1)
        grad = grad.mul_(bits > 0)  # no gradient where a width is clipped at 0 (or a weight is 0)
        gf, gi = gradient_to_params(ctx.qmod.bit_layout, ctx.qmod.bank, grad)
        return gf.to(ctx.qmod.bank.f.dtype), gi, None, None, None
