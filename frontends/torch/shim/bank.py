"""The quantizer bank: every learnable bitwidth and every running range of a shim, flat.

One flat ``f`` parameter (and one flat ``i`` for saturating quantizers) keeps the optimizer's
per-tensor work flat; one pair of flat ``vmax``/``vmin`` buffers holds the activation ranges
(one all-reduce under DDP, no concatenation for EBOPs); all weights that share a rounding mode
are quantized by one autograd call per step. That is most of what keeps a training step cheap.

Quantizer roles: ``param`` (weights, biases, constants: quantized here; integer bits follow
their values, or are learned when saturating), ``derived`` (batchnorm's folded scale and
offset, quantized by the batchnorm module), ``act`` (activations, quantized by
:class:`~hgqir.frontends.torch.shim.quantizers.ActQuantizer` modules).

``forward(*params)`` returns four entries per spec ``n`` at ``4n .. 4n+3``: the quantized tensor
(params) or the rounded ``f`` view of the group shape, the rounded learned ``i`` (or None), and
the ``vmax``/``vmin`` views (activations, else None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hgqir.fixed import OverflowMode

from ..options import Granularity, QuantizerConfig
from .quant import LN2, ClipQuant, ExactRound, FreeQuant, RoundSTE, _train_round, quantize_exact, round_exact

Tensor = torch.Tensor
_ROLE_ORDER = {"param": 0, "derived": 1, "act": 2}


@dataclass
class QSpec:
    """One quantizer: where it sits, its shape and group shape (torch layout, no batch)."""

    name: str
    role: str
    """``param``, ``derived`` or ``act``."""
    shape: tuple[int, ...]
    config: QuantizerConfig
    source: str | None = None
    """Params: attribute path of the tensor in the shim body (``fc1.weight``)."""
    group: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        g = self.config.granularity
        if g is Granularity.ELEMENT or not self.shape:
            self.group = self.shape
        elif g is Granularity.CHANNEL:
            self.group = (self.shape[0],) + (1,) * (len(self.shape) - 1)
        else:
            self.group = (1,) * len(self.shape)

    @property
    def group_size(self) -> int:
        return math.prod(self.group)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def free_param(self) -> bool:
        """A weight-like tensor whose integer bits follow its values (quantized in a flat block)."""
        return self.role == "param" and not self.config.learns_i

    @property
    def learns_i(self) -> bool:
        return self.config.learns_i and self.role in ("param", "act")

    def group_index(self) -> np.ndarray:
        """Group of every element of the tensor (row-major)."""
        return np.broadcast_to(np.arange(self.group_size).reshape(self.group), self.shape).reshape(-1)


@dataclass
class Block:
    """Free params sharing a rounding mode: one flat cast per step."""

    specs: list[int]
    numels: list[int]
    groups: int
    per_element: bool


class QuantBank(nn.Module):
    """Owns ``f``, ``i``, ``vmax``, ``vmin`` of every quantizer; quantizes the weights."""

    def __init__(self, specs: list[QSpec]) -> None:
        super().__init__()
        self.specs = specs
        self._layout()
        init = [torch.full((self.specs[n].group_size,), float(self.specs[n].config.f)) for n in self.f_order]
        self.f = nn.Parameter(torch.cat(init) if init else torch.zeros(0))
        self.i: nn.Parameter | None = None
        if self.i_specs:
            self.i = nn.Parameter(torch.zeros(sum(self.specs[n].group_size for n in self.i_specs)))
        self.register_buffer("vmax", torch.full((self.n_act,), -math.inf))
        self.register_buffer("vmin", torch.full((self.n_act,), math.inf))
        self._consts: dict[Any, Tensor] = {}
        self._ranges: tuple[Any, dict[int, tuple[Tensor, Tensor]]] | None = None

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        modes: dict[object, list[int]] = {}
        for n, s in enumerate(self.specs):
            if s.free_param:
                modes.setdefault(s.config.round, []).append(n)
        self.blocks = [
            Block(
                m,
                [self.specs[n].size for n in m],
                sum(self.specs[n].group_size for n in m),
                all(self.specs[n].group == self.specs[n].shape for n in m),
            )
            for m in modes.values()
        ]
        self.rest = sorted(
            (n for n, s in enumerate(self.specs) if not s.free_param), key=lambda n: _ROLE_ORDER[self.specs[n].role]
        )
        self.f_order = [n for b in self.blocks for n in b.specs] + self.rest
        self.i_specs = [n for n in self.rest if self.specs[n].learns_i]
        self.act_specs = [n for n in self.rest if self.specs[n].role == "act"]
        self.param_specs = [n for n, s in enumerate(self.specs) if s.role == "param"]
        self.n_act = sum(self.specs[n].group_size for n in self.act_specs)
        self.f_sizes = [b.groups for b in self.blocks] + [self.specs[n].group_size for n in self.rest]
        """Sizes of the pieces of the flat ``f``: one per block, then one per other spec (``rest``)."""
        self._i_sizes = [self.specs[n].group_size for n in self.i_specs]
        self._act_sizes = [self.specs[n].group_size for n in self.act_specs]
        self._block_order = [n for b in self.blocks for n in b.specs]
        self.simple_layout = (
            all(b.per_element for b in self.blocks)
            and all(self.specs[n].role == "act" and self.specs[n].config.signed is None for n in self.rest)
            and not self.i_specs
        )
        """Per-element range-following weights, and activations only besides (no learned ``i``,
        no folded batchnorm, no forced sign bit): ``f`` lines up with the bit-count vector and
        every width follows from a range."""
        self.f_offsets = _offsets(self.f_order, self.specs)
        """Offset of every spec's groups in the flat ``f``."""
        self.range_offsets = _offsets(self.act_specs, self.specs)
        """Offset of every activation spec's groups in the flat ``vmax`` / ``vmin``."""
        self._gidx_np = {
            b: np.concatenate(self._local_groups(blk)) for b, blk in enumerate(self.blocks) if not blk.per_element
        }

    def _local_groups(self, block: Block) -> list[np.ndarray]:
        out, base = [], 0
        for n in block.specs:
            out.append(self.specs[n].group_index() + base)
            base += self.specs[n].group_size
        return out

    def const(self, name: str, array: np.ndarray, device: torch.device) -> Tensor:
        """An index array as a tensor on ``device`` (kept out of the state: DDP broadcasts buffers)."""
        key = (name, device)
        if key not in self._consts:
            self._consts[key] = torch.from_numpy(array).to(device)
        return self._consts[key]

    def gidx(self, b: int, device: torch.device) -> Tensor:
        return self.const(f"gidx{b}", self._gidx_np[b], device)

    def f_offset(self, spec: int) -> int:
        """Offset of a spec's groups in the flat ``f``."""
        return self.f_offsets[spec]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_consts": {}, "_ranges": None}

    # ------------------------------------------------------------------ forward
    def forward(self, *params: Tensor) -> tuple[Tensor | None, ...]:
        if len(params) != len(self.param_specs):
            raise TypeError(f"the bank takes {len(self.param_specs)} tensors, got {len(params)}")
        by_spec = dict(zip(self.param_specs, params, strict=True))
        out: list[Tensor | None] = [None] * (4 * len(self.specs))
        block_params = [by_spec[n] for b in self.blocks for n in b.specs]
        fused = _BankFn.apply(self.f, self, not self.training, *block_params) if self.f.numel() else ()
        for n, value in zip(self._block_order, fused, strict=False):
            out[4 * n] = value
        pieces = fused[len(self._block_order) :]
        i_of = self.i_views(RoundSTE.apply(self.i)) if self.i is not None else {}
        ranges = self.range_views()
        for n, piece in zip(self.rest, pieces, strict=True):
            spec = self.specs[n]
            fv = piece
            if spec.role == "param":
                out[4 * n] = self.clip_param(spec, by_spec[n], fv, i_of[n], not self.training)
            else:
                out[4 * n] = fv
            out[4 * n + 1] = i_of.get(n)
            if n in ranges:
                out[4 * n + 2], out[4 * n + 3] = ranges[n]
        return tuple(out)

    def range_views(self) -> dict[int, tuple[Tensor, Tensor]]:
        """Per activation spec, views of ``vmax``/``vmin`` (cached while the buffers stay put)."""
        key = (self.vmax.data_ptr(), self.vmin.data_ptr(), self.vmax.dtype)
        if self._ranges is None or self._ranges[0] != key:
            views = {}
            his, los = self.vmax.split(self._act_sizes), self.vmin.split(self._act_sizes)
            for n, hi, lo in zip(self.act_specs, his, los, strict=True):
                views[n] = (hi.view(self.specs[n].group), lo.view(self.specs[n].group))
            self._ranges = (key, views)
        return self._ranges[1]

    def i_views(self, ir: Tensor) -> dict[int, Tensor]:
        return {n: p.view(self.specs[n].group) for n, p in zip(self.i_specs, ir.split(self._i_sizes), strict=True)}

    def quantize_block(self, b: int, params: list[Tensor], fpiece: Tensor, exact: bool) -> Tensor:
        """A block's weights, flat, rounded (exactly, or fast for training) with HGQ gradients."""
        block = self.blocks[b]
        flat = params[0].reshape(-1) if len(params) == 1 else torch.cat([p.reshape(-1) for p in params])
        f_el = fpiece if block.per_element else fpiece[self.gidx(b, fpiece.device)]
        f_el = f_el if f_el.dtype == flat.dtype else f_el.to(flat.dtype)
        rmode = self.specs[block.specs[0]].config.round
        if exact:
            return ExactRound.apply(flat, f_el, rmode)
        return FreeQuant.apply(flat, f_el, rmode, None, None)

    @staticmethod
    def clip_param(spec: QSpec, p: Tensor, fv: Tensor, iv: Tensor, exact: bool) -> Tensor:
        """A saturating weight quantizer (signed, learned integer bits)."""
        k = torch.ones_like(fv)
        fv, iv = fv.to(p.dtype), iv.to(p.dtype)
        if exact:
            return quantize_exact(p, k.to(p.dtype), iv, fv, spec.config.round, spec.config.overflow)
        return ClipQuant.apply(
            p, fv, iv, k.to(p.dtype), spec.config.round, spec.config.overflow is OverflowMode.SAT_SYM
        )

    def reset_ranges(self) -> None:
        """Forget every activation range (calibration starts from scratch)."""
        self.vmax.fill_(-math.inf)
        self.vmin.fill_(math.inf)

    def ranges(self, spec: int) -> tuple[Tensor, Tensor]:
        """``vmax``, ``vmin`` views of an activation spec (group shape)."""
        off = self.range_offsets[spec]
        size, group = self.specs[spec].group_size, self.specs[spec].group
        return self.vmax[off : off + size].view(group), self.vmin[off : off + size].view(group)


def _offsets(order: list[int], specs: list[QSpec]) -> dict[int, int]:
    """Where each spec's groups start when the specs' groups are laid out flat in ``order``."""
    out, off = {}, 0
    for n in order:
        out[n] = off
        off += specs[n].group_size
    return out


class _BankFn(torch.autograd.Function):
    """One autograd node for the bank's step: rounded ``f`` views and every free weight block.

    Forward: ``round(f)`` split per quantizer; each block's weights flattened, cast (exactly in
    eval, fast in training) with their ``f``. Outputs: the quantized weights (param shapes),
    then the rounded ``f`` of every other quantizer (group shapes). Backward: straight through
    for the weights, the HGQ surrogate ``-ln2 * (wq - w)`` for their ``f``, identity for the
    other ``f`` views; all written into one flat gradient.
    """

    @staticmethod
    def forward(ctx: Any, f: Tensor, bank: QuantBank, exact: bool, *params: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        pieces = torch.round(f).split_with_sizes(bank.f_sizes)
        outs: list[Tensor] = []
        deltas = []
        pos = 0
        for b, block in enumerate(bank.blocks):
            ps = params[pos : pos + len(block.specs)]
            pos += len(block.specs)
            flat = ps[0].reshape(-1) if len(ps) == 1 else torch.cat([p.reshape(-1) for p in ps])
            f_el = pieces[b] if block.per_element else pieces[b][bank.gidx(b, f.device)]
            f_el = f_el.to(flat.dtype)
            rmode = bank.specs[block.specs[0]].config.round
            if exact:
                wq = round_exact(flat, f_el, rmode)
            else:
                scale = torch.exp2(f_el)
                wq = _train_round(flat, scale, rmode) / scale
            deltas.append(wq - flat)
            parts = wq.split_with_sizes(block.numels) if len(block.specs) > 1 else (wq,)
            outs += [part.view(bank.specs[n].shape) for n, part in zip(block.specs, parts, strict=True)]
        outs += [p.view(bank.specs[n].group) for n, p in zip(bank.rest, pieces[len(bank.blocks) :], strict=True)]
        ctx.save_for_backward(*deltas)
        ctx.bank, ctx.shapes, ctx.f_dtype = bank, [p.shape for p in params], f.dtype
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        bank: QuantBank = ctx.bank
        deltas = ctx.saved_tensors
        ref = deltas[0] if deltas else next(g for g in grads if g is not None)
        gf_parts, g_params = [], []
        k = 0
        for b, (block, delta) in enumerate(zip(bank.blocks, deltas, strict=True)):
            gs = grads[k : k + len(block.specs)]
            k += len(block.specs)
            flat = [
                g.reshape(-1) if g is not None else delta.new_zeros(n) for g, n in zip(gs, block.numels, strict=True)
            ]
            g_flat = flat[0] if len(flat) == 1 else torch.cat(flat)
            gf_el = (g_flat * delta).mul_(-LN2)
            if not block.per_element:
                gf_el = gf_el.new_zeros(block.groups).index_add_(0, bank.gidx(b, gf_el.device), gf_el)
            gf_parts.append(gf_el)
            g_params += list(gs)
        for n, g in zip(bank.rest, grads[k:], strict=True):
            size = bank.specs[n].group_size
            gf_parts.append(g.reshape(-1).to(ref.dtype) if g is not None else ref.new_zeros(size))
        gf = torch.cat([p.to(ctx.f_dtype) for p in gf_parts]) if len(gf_parts) > 1 else gf_parts[0].to(ctx.f_dtype)
        g_params = [None if g is None else g.reshape(s) for g, s in zip(g_params, ctx.shapes, strict=True)]
        return (gf, None, None, *g_params)
