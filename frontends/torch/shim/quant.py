"""Quantizer arithmetic of the PyTorch shims: exact ap_fixed casts and the HGQ gradients.

Two families live here:

* exact casts on float tensors (:func:`quantize_exact`), used in eval mode and calibration.
  In float64 they agree bit for bit with :func:`hgqir.quantize` (multiplying by ``2**f`` is
  exact and rounding compares against ``floor + 0.5``, never a rounded remainder);
* autograd functions for training. They follow the HGQ method: straight-through for the input
  ``x``, the surrogate ``d out / d f = -ln2 * (xq - x)`` for the fractional bits, and, where a
  quantizer saturates, gradients for the integer bits through the clip bounds.

Bit counts ``k``, ``i``, ``f`` are float tensors holding integers (so they follow ``.double()``
and ``.to(device)`` like any other state).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hgqir.fixed import OverflowMode, RoundMode

LN2 = math.log(2.0)

Tensor = torch.Tensor


# ---------------------------------------------------------------- exact casts
def _round(v: Tensor, mode: RoundMode) -> Tensor:
    """Round integer-scaled values ``v`` exactly with an ap_fixed rounding mode.

    Ties are decided by the sign of ``v - (floor(v) + 0.5)``: ``floor(v) + 0.5`` is exact while
    ``|v|`` is below 2**52 (float64) or 2**23 (float32) and a difference of two floats never
    rounds to the wrong sign (the remainder ``v - floor(v)`` itself can round up to 0.5 for
    negative ``v``). Beyond, every float is an integer and ``floor(v) + 0.5`` rounds back to
    ``v``: such ``v`` are kept as they are, not taken for ties. Arithmetic instead of comparisons
    keeps the common modes fast on CPU.
    """
    if mode is RoundMode.TRN:
        return torch.floor(v)
    if mode is RoundMode.TRN_ZERO:
        return torch.trunc(v)
    if mode is RoundMode.RND_CONV:
        return torch.round(v)  # IEEE round-half-even of an exactly scaled value
    fl = torch.floor(v)
    side = torch.sign(v - (fl + 0.5))  # -1 below half, 0 at a tie, 1 above
    side = torch.where(fl == v, -1.0, side)  # integers: nothing to round (also where fl + 0.5 is not exact)
    if mode is RoundMode.RND:
        return fl + torch.ceil(side * 0.5 + 0.5)
    if mode is RoundMode.RND_MIN_INF:
        return fl + torch.clamp(side, min=0.0)
    tie_up = (v > 0) if mode is RoundMode.RND_INF else (v < 0)
    if mode in (RoundMode.RND_INF, RoundMode.RND_ZERO):
        return fl + torch.where(side == 0, tie_up.to(v.dtype), torch.clamp(side, min=0.0))
    raise ValueError(f"unhandled rounding mode {mode}")  # pragma: no cover


def ceil_log2(top: Tensor) -> Tensor:
    """``ceil(log2(top))`` exactly for positive normal floats, in ``top``'s dtype."""
    mant, exp = torch.frexp(top)  # top = mant * 2**exp, mant in [0.5, 1)
    return exp.to(top.dtype) + torch.ceil(mant * 2.0 - 1.0) - 1.0


def _overflow(q: Tensor, k: Tensor, width: Tensor, mode: OverflowMode) -> Tensor:
    """Overflow handling of integer mantissas ``q`` into ``width`` bits (``k`` of them the sign)."""
    safe = torch.clamp(width, min=1.0)
    modulus = torch.exp2(safe)
    hi = torch.exp2(safe - k) - 1.0
    signed = k > 0
    lo = torch.where(signed, -torch.exp2(safe - 1.0), torch.zeros_like(hi))
    if mode is OverflowMode.WRAP:
        r = q - modulus * torch.floor(q / modulus)
        return torch.where(signed & (r > hi), r - modulus, r)
    if mode is OverflowMode.SAT_SYM:
        # as ap_fixed: the most negative code is dropped, except for 1-bit signed types
        lo = torch.where(signed & (safe > 1.0), -hi, lo)
    if mode in (OverflowMode.SAT, OverflowMode.SAT_SYM):
        return torch.minimum(torch.maximum(q, lo), hi)
    if mode is OverflowMode.SAT_ZERO:
        return torch.where((q < lo) | (q > hi), torch.zeros_like(q), q)
    raise ValueError(f"unhandled overflow mode {mode}")  # pragma: no cover


def quantize_exact(x: Tensor, k: Tensor, i: Tensor, f: Tensor, rmode: RoundMode, omode: OverflowMode | None) -> Tensor:
    """``ap_fixed<k+i+f, k+i, rmode, omode>(x)`` per element; ``omode=None`` skips overflow.

    ``k``, ``i``, ``f`` broadcast against ``x`` (trailing axes). Elements of width ``<= 0`` are
    0. Exact in float64 while ``|x| * 2**f`` stays below ``2**52``.
    """
    q = _round(x * torch.exp2(f), rmode)
    width = k + i + f
    if omode is not None:
        q = _overflow(q, k, width, omode)
    out = q * torch.exp2(-f)
    return torch.where(width > 0, out, torch.zeros_like(out)) + 0.0


def needed_ki(lo: Tensor, hi: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest ``(k, i)`` holding quantized values in ``[lo, hi]`` at ``f`` fractional bits.

    Groups that only ever held 0 (or nothing: ``lo = inf``, ``hi = -inf``) get ``k = 0,
    i = -f``: width 0, pruned. ``lo`` and ``hi`` are multiples of ``2**-f``.
    """
    lsb = torch.exp2(-f)
    top = torch.maximum(torch.clamp(hi + lsb, min=lsb), -lo)  # lsb exactly when nothing is nonzero
    k = torch.clamp(torch.sign(-lo), min=0.0)
    return k, ceil_log2(top)


def width_of_mantissas(lo: Tensor, hi: Tensor) -> Tensor:
    """Width ``k + i + f`` of the smallest type holding integer mantissas in ``[lo, hi]``.

    The same type as :func:`needed_ki` (in units of the LSB: ``i + f = ceil(log2(top))``), so
    never negative; 0 for a range that only holds 0. Cheaper when only the width is needed.
    """
    top = torch.maximum((hi + 1.0).clamp_(min=1.0), -lo)
    mant, exp = torch.frexp(top)  # ceil(log2(top)) = exp, less 1 when top is a power of 2 (mant = 0.5)
    return exp.to(top.dtype).add_(lo < 0).sub_(mant.eq_(0.5))


def group_ki(v: Tensor, group: tuple[int, ...], f: Tensor) -> tuple[Tensor, Tensor]:
    """``(k, i)`` per group of unbatched values ``v`` (weights, folded batchnorm parameters)."""
    dims = [d for d, n in enumerate(group) if n == 1 and v.shape[d] != 1]
    lo = v.amin(dim=dims, keepdim=True) if dims else v
    hi = v.amax(dim=dims, keepdim=True) if dims else v
    return needed_ki(lo, hi, f)


def reduce_dims(x_shape: tuple[int, ...], group: tuple[int, ...]) -> tuple[int, ...]:
    """Batched axes to reduce to get from a batch of ``x_shape`` tensors to ``group``."""
    return (0,) + tuple(d + 1 for d, n in enumerate(group) if n == 1 and x_shape[d] != 1)


def reduce_to(t: Tensor, shape: tuple[int, ...], op: str = "sum") -> Tensor:
    """Reduce batched ``t`` over the batch axis and every axis where ``shape`` has size 1."""
    dims = [0] + [d + 1 for d, n in enumerate(shape) if n == 1 and t.shape[d + 1] != 1]
    if op == "sum":
        out = t.sum(dim=dims, keepdim=True)
    elif op == "max":
        out = t.amax(dim=dims, keepdim=True)
    else:
        out = t.amin(dim=dims, keepdim=True)
    return out[0]


def _grad_to(g: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``g`` down to a broadcastable ``shape`` (batch axis included in ``g``)."""
    extra = g.dim() - len(shape)
    if extra:
        g = g.sum(dim=tuple(range(extra)))
    keep = [d for d, n in enumerate(shape) if n == 1 and g.shape[d] != 1]
    return g.sum(dim=keep, keepdim=True) if keep else g


# ---------------------------------------------------------------- training autograd functions
class RoundSTE(torch.autograd.Function):
    """``round(f)`` forward, identity backward: the integer bit counts a quantizer uses."""

    @staticmethod
    def forward(ctx: Any, f: Tensor) -> Tensor:
        return torch.round(f)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        return g


def _train_round(x: Tensor, scale: Tensor, rmode: RoundMode) -> Tensor:
    """``round(x * scale)`` fast, for training: ties go to even in every rounding-to-nearest
    mode (exact ties are rare in training data; eval mode rounds exactly)."""
    v = x * scale
    if rmode is RoundMode.TRN:
        return v.floor_()
    if rmode is RoundMode.TRN_ZERO:
        return v.trunc_()
    return v.round_()


class FreeQuant(torch.autograd.Function):
    """Training quantizer without overflow (WRAP quantizers whose range follows the data).

    Forward: ``round(x * 2**f) * 2**-f``; optionally folds the result's per-group max and min
    into the running-statistics buffers ``vmax`` / ``vmin`` (in place), after shrinking them
    towards 0 by ``decay`` (see :func:`decay_ranges`). Backward: straight through for ``x``;
    ``-ln2 * (xq - x)`` for ``f``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        f: Tensor,
        rmode: RoundMode,
        vmax: Tensor | None,
        vmin: Tensor | None,
        dims: tuple[int, ...] = (0,),
        decay: float = 1.0,
    ) -> Tensor:
        scale = torch.exp2(f)
        q = _train_round(x, scale, rmode).div_(scale)
        if vmax is not None and vmin is not None:
            if decay != 1.0:
                decay_ranges(vmax, vmin, decay)
            hi = q.amax(dim=dims, keepdim=len(dims) > 1)
            lo = q.amin(dim=dims, keepdim=len(dims) > 1)
            if len(dims) > 1:
                hi, lo = hi[0], lo[0]
            torch.maximum(vmax, hi, out=vmax)
            torch.minimum(vmin, lo, out=vmin)
        ctx.save_for_backward(q - x)
        ctx.f_shape = f.shape
        ctx.vec = x.dim() == f.dim() + 1 and x.shape[1:] == f.shape
        return q

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (delta,) = ctx.saved_tensors
        gf = None
        if ctx.needs_input_grad[1]:
            gf = torch.linalg.vecdot(g, delta, dim=0) if ctx.vec else _grad_to(g * delta, ctx.f_shape)
            gf = gf.mul_(-LN2)
        return g, gf, None, None, None, None, None


def decay_factor(i_decay: float) -> float:
    """The factor ``2**-i_decay`` that shrinks a running range by ``i_decay`` integer bits, rounded
    to a float32 value (so that it is the same number in every dtype and in the kernels)."""
    return float(torch.tensor(2.0 ** -float(i_decay), dtype=torch.float32))


def decay_ranges(vmax: Tensor, vmin: Tensor, decay: float) -> None:
    """Shrink running ranges towards 0, in place: positive ``vmax`` and negative ``vmin`` times
    ``decay`` (the integer bits they need fall by ``-log2(decay)`` per call, as HGQ's running
    integer bits decay by ``i_decay`` per training step)."""
    vmax.copy_(torch.where(vmax > 0, vmax * decay, vmax))
    vmin.copy_(torch.where(vmin < 0, vmin * decay, vmin))


class ClipQuant(torch.autograd.Function):
    """Training quantizer with saturation (SAT / SAT_SYM) and learnable integer bits ``i``.

    Inside the range: straight through for ``x`` and the HGQ surrogate for ``f``. Clipped
    elements pass no gradient to ``x``; they pull the bound: ``d(2**i - 2**-f)`` towards ``i``
    and ``f`` at the top, ``d(-k * 2**i)`` (or the symmetric bound) at the bottom.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, f: Tensor, i: Tensor, k: Tensor, rmode: RoundMode, symmetric: bool
    ) -> Tensor:
        lsb = torch.exp2(-f)
        top = torch.exp2(i)
        hi = top - lsb
        lo = torch.where(k > 0, -hi if symmetric else -top, torch.zeros_like(top))
        q = _train_round(x, torch.exp2(f), rmode).mul_(lsb)
        above, below = q > hi, q < lo
        out = torch.where(above, hi, torch.where(below, lo, q))
        width_live = (k + i + f) > 0
        out = torch.where(width_live, out, torch.zeros_like(out))
        ctx.save_for_backward(out - x, above, below, lsb, top, k)
        ctx.symmetric = symmetric
        ctx.shapes = (f.shape, i.shape)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        delta, above, below, lsb, top, k = ctx.saved_tensors
        inside = ~(above | below)
        zero = torch.zeros_like(g)
        gx = torch.where(inside, g, zero)
        # bounds: hi = 2**i - 2**-f; lo = -k * 2**i, or -k * hi when symmetric
        d_lo_f = -LN2 * lsb * k if ctx.symmetric else torch.zeros_like(lsb)
        df = torch.where(inside, -LN2 * delta, torch.where(above, LN2 * lsb, d_lo_f))
        di = torch.where(above, LN2 * top, torch.where(below, -LN2 * top * k, zero))
        return gx, _grad_to(g * df, ctx.shapes[0]), _grad_to(g * di, ctx.shapes[1]), None, None, None


class ExactQuant(torch.autograd.Function):
    """Exact cast (eval mode) that still passes HGQ gradients (for users who differentiate in eval)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, f: Tensor, k: Tensor, i: Tensor, rmode: RoundMode, omode: OverflowMode | None
    ) -> Tensor:
        out = quantize_exact(x, k, i, f, rmode, omode)
        ctx.save_for_backward(out - x)
        ctx.f_shape = f.shape
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return (*_exact_grads(ctx, g), None, None, None, None)


class ExactRound(torch.autograd.Function):
    """Exact rounding to ``f`` fractional bits, no overflow (weights whose range follows them)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, f: Tensor, rmode: RoundMode) -> Tensor:  # type: ignore[override]
        out = round_exact(x, f, rmode)
        ctx.save_for_backward(out - x)
        ctx.f_shape = f.shape
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return (*_exact_grads(ctx, g), None)


def _exact_grads(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor | None]:
    """Gradients of an exact cast for ``x`` (straight through) and ``f`` (``-ln2 * (q - x)``)."""
    (delta,) = ctx.saved_tensors
    gf = _grad_to(g * delta, ctx.f_shape).mul_(-LN2) if ctx.needs_input_grad[1] else None
    return g, gf


def round_exact(x: Tensor, f: Tensor, rmode: RoundMode) -> Tensor:
    """``x`` rounded exactly to multiples of ``2**-f`` (no overflow handling)."""
    return _round(x * torch.exp2(f), rmode) * torch.exp2(-f) + 0.0
