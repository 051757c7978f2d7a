"""Modules of a shim's body: activation quantizers (plain, table, softmax, average pool) and
the quantized batchnorm.

Every quantizer gets its rounded fractional bits ``f`` (and learned ``i``) and views of its
running value range (``vmax``, ``vmin``, from which WRAP quantizers take their integer bits)
from the bank as call arguments; the modules themselves hold only configuration. Three modes:

* training: fast HGQ autograd functions, running ranges updated;
* calibrating (set by :func:`~hgqir.frontends.torch.shim.calibrate.calibrate`): exact rounding
  without overflow, ranges recorded from scratch;
* eval: the exact cast with the final types, bit-identical to the IR.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hgqir.fixed import OverflowMode, RoundMode

from ..options import QuantizerConfig
from ..tables import FUNCTIONS, TORCH_FUNCTIONS, SoftmaxTables, lut_out_kif, lut_table, softmax_tables, union_kif
from .quant import (
    ClipQuant,
    ExactQuant,
    ExactRound,
    FreeQuant,
    needed_ki,
    quantize_exact,
    reduce_dims,
    reduce_to,
    round_exact,
)

Tensor = torch.Tensor


class ActQuantizer(nn.Module):
    """Quantizer of an activation (or a model input / output) with per-group bit counts.

    Stateless: ``f`` (and ``i``) and the running range views ``vmax``/``vmin`` come from the
    bank as call arguments, so that all of them live in a few flat tensors.
    """

    def __init__(self, group: tuple[int, ...], config: QuantizerConfig, spec: str, decay: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        self.group = tuple(group)
        self.decay = float(decay)
        """Training: the running range shrinks by this factor before each batch is folded in
        (``2**-i_decay``; WRAP quantizers only)."""
        self.round: RoundMode = config.round
        self.overflow: OverflowMode = config.overflow
        self.learns_i = config.learns_i
        self.signed = config.signed
        """Sign bit forced on (True) or off (False); None: from the range (any negative value)."""
        self.calibrating = False
        self._dims: tuple[int, ...] | None = None

    def extra_repr(self) -> str:
        return f"group={list(self.group)}, round={self.round.name}, overflow={self.overflow.name}"

    def forward(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> Tensor:
        f = f if f.dtype == x.dtype else f.to(x.dtype)
        if self.calibrating:
            return self.observe(round_exact(x, f.detach(), self.round), vmax, vmin)
        if self.training:
            return self._train(x, f, vmax, vmin, i)
        k, ii = self.ki(f.detach(), vmax, vmin, i)
        return ExactQuant.apply(x, f, k, ii, self.round, self.overflow)

    def _train(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None) -> Tensor:
        if self._dims is None:
            self._dims = reduce_dims(tuple(x.shape[1:]), self.group)
        if not self.learns_i:
            return FreeQuant.apply(x, f, self.round, vmax, vmin, self._dims, self.decay)
        assert i is not None
        k = self._k(torch.clamp(torch.sign(-vmin), min=0.0).to(x.dtype))
        q = ClipQuant.apply(x, f, i.to(x.dtype), k, self.round, self.overflow is OverflowMode.SAT_SYM)
        self.observe(q.detach(), vmax, vmin)
        return q

    @torch.no_grad()
    def observe(self, q: Tensor, vmax: Tensor, vmin: Tensor) -> Tensor:
        """Fold a batch of quantized values into the running range (in place)."""
        torch.maximum(vmax, reduce_to(q, self.group, "max").to(vmax.dtype), out=vmax)
        torch.minimum(vmin, reduce_to(q, self.group, "min").to(vmin.dtype), out=vmin)
        return q

    def ki(self, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sign and integer bits per group: learned ``i`` (saturating) or from the range (WRAP)."""
        vmin, vmax = vmin.to(f.dtype), vmax.to(f.dtype)
        k, need = needed_ki(vmin, vmax, f)
        k = self._k(k)
        if self.learns_i and i is not None:
            return k, i.to(f.dtype)
        return k, need

    def _k(self, k: Tensor) -> Tensor:
        return k if self.signed is None else torch.full_like(k, float(self.signed))

    def kif(self, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> tuple[np.ndarray, ...]:
        """Integer numpy ``k``, ``i``, ``f`` per group (what the IR gets)."""
        f64 = f.detach().double()
        k, ii = self.ki(f64, vmax.detach(), vmin.detach(), None if i is None else i.detach().double())
        return tuple(a.cpu().numpy().astype(np.int64) for a in (k, ii, f64))


class TableQuantizer(ActQuantizer):
    """Quantizer followed by a function table (sigmoid, tanh, elu, ...) (the IR's ``quant`` + ``lut``)."""

    def __init__(
        self, group: tuple[int, ...], config: QuantizerConfig, spec: str, func: str, out_f: int, table_bits: int
    ) -> None:
        super().__init__(group, config, spec)
        self.func = func
        self.out_f = int(out_f)
        self.table_bits = int(table_bits)
        self._tables: dict[Any, Tensor] = {}

    def extra_repr(self) -> str:
        return f"{self.func}, out_f={self.out_f}, " + super().extra_repr()

    def forward(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> Tensor:
        q = super().forward(x, f, vmax, vmin, i)
        k, ii, ff = (float(v) for v in lut_out_kif(self.func, self.out_f))
        if self.training:
            y = TORCH_FUNCTIONS[self.func](q)
            yq = quantize_exact(
                y.detach(), *(torch.tensor(v, dtype=y.dtype) for v in (k, ii, ff)), RoundMode.RND, OverflowMode.SAT
            )
            return y + (yq - y.detach())
        if self.calibrating:
            y = torch.from_numpy(FUNCTIONS[self.func](q.detach().cpu().double().numpy())).to(q)
            return quantize_exact(
                y, *(torch.tensor(v, dtype=y.dtype) for v in (k, ii, ff)), RoundMode.RND, OverflowMode.SAT
            )
        return self._lookup(q, union_kif(*self.kif(f, vmax, vmin, i)))

    def _lookup(self, q: Tensor, in_kif: tuple[int, int, int]) -> Tensor:
        key = (in_kif, q.dtype, q.device)
        if key not in self._tables:
            data, t = lut_table(self.func, in_kif, self.out_f, self.table_bits)
            self._tables[key] = torch.from_numpy(np.ldexp(data.astype(np.float64), -t.f)).to(q)
        k, ii, ff = in_kif
        lo = -k * 2 ** max(ii + ff, 0)
        idx = (q.detach() * 2.0**ff).to(torch.int64) - lo
        return self._tables[key][idx]


def prelu(x: Tensor, alpha: Tensor) -> Tensor:
    """``x`` where ``x >= 0``, ``alpha * x`` below (the IR's ``prelu``; exact in float64 for
    quantized operands: the product has at most the sum of their widths)."""
    return torch.where(x >= 0, x, x * alpha)


class SoftmaxQuantizer(ActQuantizer):
    """Quantizer followed by the IR's table softmax (``log``: log_softmax) along ``axis`` (unbatched)."""

    def __init__(
        self,
        group: tuple[int, ...],
        config: QuantizerConfig,
        spec: str,
        axis: int,
        exp_f: int,
        inv_f: int,
        sum_f: int,
        table_bits: int,
        log: bool = False,
    ) -> None:
        super().__init__(group, config, spec)
        self.log = bool(log)
        self.axis = int(axis)
        self.exp_f, self.inv_f, self.sum_f = int(exp_f), int(inv_f), int(sum_f)
        self.table_bits = int(table_bits)
        self._tables: dict[Any, tuple[SoftmaxTables, Tensor, Tensor]] = {}

    def _cached(self, in_kif: Any, n: int, dtype: torch.dtype, device: Any) -> tuple[SoftmaxTables, Tensor, Tensor]:
        key = (in_kif, n, dtype, device)
        if key not in self._tables:
            t = softmax_tables(in_kif, n, self.exp_f, self.inv_f, self.sum_f, self.table_bits, log=self.log)
            to = lambda d, ty: torch.from_numpy(np.ldexp(d.astype(np.float64), -ty.f)).to(dtype=dtype, device=device)  # noqa: E731
            self._tables[key] = (t, to(t.exp_data, t.exp_type), to(t.inv_data, t.inv_type))
        return self._tables[key]

    def forward(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> Tensor:
        q = super().forward(x, f, vmax, vmin, i)
        dim = self.axis + 1
        if self.training or self.calibrating:
            return F.log_softmax(q, dim=dim) if self.log else F.softmax(q, dim=dim)
        n = q.shape[dim]
        t, exp_t, inv_t = self._cached(union_kif(*self.kif(f, vmax, vmin, i)), n, q.dtype, q.device)
        m = q.detach() * 2.0**t.in_f
        d = (m.amax(dim=dim, keepdim=True) - m).to(torch.int64).clamp(max=exp_t.numel() - 1)
        e = exp_t[d]
        s = e.sum(dim=dim, keepdim=True)
        _, si, sf = t.inv_in
        top = 2 ** (si + sf) - 1
        idx = torch.floor(s * 2.0**sf).clamp(0, top).to(torch.int64)
        if self.log:  # (x - max) - log(s): exact in float64 (both on the grid, few bits)
            return (m - m.amax(dim=dim, keepdim=True)) * 2.0**-t.in_f - inv_t[idx]
        return e * inv_t[idx]


class AvgPoolQuantizer(ActQuantizer):
    """Average pooling whose exact window mean is truncated into this quantizer's type.

    Always ``TRN`` and ``WRAP`` (the IR's avgpool casts like a C++ assignment); ``nd=0`` is
    global pooling over every spatial axis (adaptive pooling to size 1).
    """

    def __init__(
        self,
        group: tuple[int, ...],
        config: QuantizerConfig,
        spec: str,
        nd: int,
        kernel: tuple[int, ...] = (),
        stride: tuple[int, ...] = (),
        pads: tuple[tuple[int, int], ...] = (),
        count_pad: bool = True,
    ) -> None:
        cfg = QuantizerConfig(config.granularity, RoundMode.TRN, OverflowMode.WRAP, config.f, signed=config.signed)
        super().__init__(group, cfg, spec)
        self.nd, self.kernel, self.stride, self.pads, self.count_pad = nd, kernel, stride, pads, count_pad

    def mean(self, x: Tensor) -> Tensor:
        """Window sums divided by the element counts (float division; truncation makes it exact)."""
        if self.nd == 0:
            dims = tuple(range(2, x.dim()))
            return x.sum(dim=dims, keepdim=True) / math.prod(x.shape[2:])
        x4 = x.unsqueeze(2) if self.nd == 1 else x
        kernel = ((1,) + self.kernel) if self.nd == 1 else self.kernel
        stride = ((1,) + self.stride) if self.nd == 1 else self.stride
        pad = ((0,) + tuple(p[0] for p in self.pads)) if self.nd == 1 else tuple(p[0] for p in self.pads)
        total = F.avg_pool2d(x4, kernel, stride, pad, divisor_override=1)
        if self.count_pad or not any(pad):
            count: Any = math.prod(self.kernel)
        else:
            ones = torch.ones_like(x4[:1, :1])
            count = F.avg_pool2d(ones, kernel, stride, pad, divisor_override=1)
        out = total / count
        return out.squeeze(2) if self.nd == 1 else out

    def forward(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor, i: Tensor | None = None) -> Tensor:
        return super().forward(self.mean(x), f, vmax, vmin, i)


class QBatchNorm(nn.Module):
    """Batchnorm as a quantized per-channel affine ``x * scale + offset``.

    Training normalizes with the batch statistics (and updates the running ones, as
    ``nn.BatchNorm`` does); the folded ``scale = weight / sqrt(var + eps)`` and
    ``offset = bias - mean * scale`` are quantized with the bank's ``f`` for them. Eval uses
    the running statistics and exact rounding: the IR's ``batchnorm`` op gets the same numbers.
    """

    def __init__(
        self, bn: nn.modules.batchnorm._BatchNorm, scale_cfg: QuantizerConfig, offset_cfg: QuantizerConfig
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.weight = bn.weight
        self.bias = bn.bias
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        self.rounds = (scale_cfg.round, offset_cfg.round)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    def _fold(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        return _fold(mean, var, self.weight, self.bias, self.eps)

    def affine(self, f_scale: Tensor, f_offset: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Exact quantized ``(scale, offset)`` from the running statistics (eval, export, EBOPs).

        ``dtype`` folds in another precision (the importer folds in float64, as the float64 shim does).
        """
        if dtype is None or dtype == self.running_mean.dtype:
            scale, offset = self._fold(self.running_mean, self.running_var)
        else:
            with torch.no_grad():
                w = None if self.weight is None else self.weight.to(dtype)
                b = None if self.bias is None else self.bias.to(dtype)
                scale, offset = _fold(self.running_mean.to(dtype), self.running_var.to(dtype), w, b, self.eps)
        fs, fo = f_scale.to(scale.dtype), f_offset.to(scale.dtype)
        return ExactRound.apply(scale, fs, self.rounds[0]), ExactRound.apply(offset, fo, self.rounds[1])

    def _batch_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        with torch.no_grad():
            n = x.numel() // x.shape[1]
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return mean, var

    def forward(self, x: Tensor, f_scale: Tensor, f_offset: Tensor) -> Tensor:
        if self.training:
            scale, offset = self._fold(*self._batch_stats(x))
            s = FreeQuant.apply(scale, f_scale.to(x.dtype), self.rounds[0], None, None)
            o = FreeQuant.apply(offset, f_offset.to(x.dtype), self.rounds[1], None, None)
        else:
            s, o = self.affine(f_scale, f_offset)
        view = (-1,) + (1,) * (x.dim() - 2)
        return x * s.view(view) + o.view(view)


def fold_batchnorm(bn: nn.modules.batchnorm._BatchNorm, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The folded ``(scale, offset)`` of a float batchnorm in eval mode, computed in ``dtype``
    exactly as :meth:`QBatchNorm.affine` folds it."""
    with torch.no_grad():
        w = None if bn.weight is None else bn.weight.detach().to(dtype)
        b = None if bn.bias is None else bn.bias.detach().to(dtype)
        return _fold(bn.running_mean.to(dtype), bn.running_var.to(dtype), w, b, bn.eps)  # type: ignore[union-attr]


def _fold(mean: Tensor, var: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:
    """Batchnorm as ``scale = weight / sqrt(var + eps)``, ``offset = bias - mean * scale``."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = weight * scale
    offset = -mean * scale
    if bias is not None:
        offset = bias + offset
    return scale, offset
