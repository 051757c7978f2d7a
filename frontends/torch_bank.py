"""The quantizer bank: every learnable bitwidth of a shim in one flat parameter.

One flat ``f`` parameter (and one flat ``i`` for saturating quantizers) keeps the optimizer's
per-tensor overhead flat, and lets all weights that share a rounding mode be quantized by one
autograd call per step: that is most of what keeps a shim's training step cheap.

Quantizer roles: ``param`` (weights, biases, scalar constants: quantized here, their integer
bits follow their values), ``derived`` (batchnorm's folded scale and offset: quantized by the
batchnorm module from this bank's ``f``), ``act`` (activations: quantized by
:class:`~hgqir.frontends.torch_modules.ActQuantizer` modules from this bank's ``f``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .torch_config import Granularity, QuantizerConfig
from hgqir.fixed import OverflowMode

from .torch_quant import ClipQuant, ExactRound, RoundSTE, needed_ki, quantize_exact

Tensor = torch.Tensor


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


@dataclass
class _Block:
    """Free params sharing a rounding mode: one flat cast per step."""

    specs: list[int]
    numels: list[int]
    per_element: bool


class QuantBank(nn.Module):
    """Owns ``f`` (and ``i``) of every quantizer; quantizes weights; hands out ``f`` views.

    ``forward(*params)`` takes the param specs' tensors in spec order and returns a tuple with
    one entry per spec (quantized tensor for ``param`` specs, rounded-``f`` view of the group
    shape otherwise) followed by the rounded ``i`` views of the specs that learn ``i``.
    """

    def __init__(self, specs: list[QSpec]) -> None:
        super().__init__()
        self.specs = specs
        self._layout()
        init_f = [torch.full((n,), float(self.specs[s].config.f)) for s, n in self._f_parts()]
        self.f = nn.Parameter(torch.cat(init_f) if init_f else torch.zeros(0))
        self.i: nn.Parameter | None = None
        if self.i_specs:
            self.i = nn.Parameter(torch.zeros(sum(self.specs[s].group_size for s in self.i_specs)))

    # ------------------------------------------------------------------ layout
    def _gidx(self, b: int, device: torch.device) -> Tensor:
        """Group index of every element of block ``b`` (a constant kept out of the state)."""
        key = (b, device)
        if key not in self._gidx_t:
            self._gidx_t[key] = torch.from_numpy(self._gidx_np[b]).to(device)
        return self._gidx_t[key]

    def _layout(self) -> None:
        self._gidx_np: dict[int, np.ndarray] = {}
        self._gidx_t: dict[tuple[int, torch.device], Tensor] = {}
        self._last: tuple[Any, list[Tensor]] | None = None
        free = [n for n, s in enumerate(self.specs) if s.free_param]
        modes: dict[object, list[int]] = {}
        for n in free:
            modes.setdefault(self.specs[n].config.round, []).append(n)
        self.blocks: list[_Block] = []
        for b, members in enumerate(modes.values()):
            per_elem = all(self.specs[n].group == self.specs[n].shape for n in members)
            self.blocks.append(_Block(members, [self.specs[n].size for n in members], per_elem))
            if not per_elem:
                self._gidx_np[b] = self._group_index(members)
        order = {"param": 0, "derived": 1, "act": 2}
        self.rest = sorted((n for n, s in enumerate(self.specs) if not s.free_param), key=lambda n: order[self.specs[n].role])
        self.n_act_groups = sum(self.specs[n].group_size for n in self.rest if self.specs[n].role == "act")
        self.i_specs = [n for n in self.rest if self.specs[n].learns_i]
        self.param_specs = [n for n, s in enumerate(self.specs) if s.role == "param"]
        self._sizes = [self._block_groups(b) for b in self.blocks] + [self.specs[n].group_size for n in self.rest]

    def _block_groups(self, b: _Block) -> int:
        return sum(self.specs[n].group_size for n in b.specs)

    def _group_index(self, members: list[int]) -> np.ndarray:
        """Block-local group index of every element of a block's flat tensor."""
        out, base = [], 0
        for n in members:
            s = self.specs[n]
            idx = np.arange(s.group_size).reshape(s.group)
            out.append(np.broadcast_to(idx, s.shape).reshape(-1) + base)
            base += s.group_size
        return np.concatenate(out).astype(np.int64)

    def _f_parts(self) -> list[tuple[int, int]]:
        """(spec, group count) in the order of the flat ``f``."""
        return [(n, self.specs[n].group_size) for b in self.blocks for n in b.specs] + [
            (n, self.specs[n].group_size) for n in self.rest
        ]

    def f_offset(self, spec: int) -> int:
        """Offset of a spec's groups in the flat ``f``."""
        off = 0
        for n, size in self._f_parts():
            if n == spec:
                return off
            off += size
        raise KeyError(spec)

    # ------------------------------------------------------------------ forward
    def rounded(self, flat: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Rounded ``f`` pieces (blocks, then one per rest spec) and rounded ``i`` views."""
        fr = RoundSTE.apply(self.f) if flat is None else flat
        pieces = list(fr.split(self._sizes)) if self.f.numel() else []
        iv: list[Tensor] = []
        if self.i is not None:
            sizes = [self.specs[n].group_size for n in self.i_specs]
            iv = [p.view(self.specs[n].group) for n, p in zip(self.i_specs, RoundSTE.apply(self.i).split(sizes))]
        return pieces, iv

    def forward(self, *params: Tensor) -> tuple[Tensor | None, ...]:
        """Per spec ``(main, i)``: quantized param or rounded-``f`` view, then learned ``i`` or None."""
        if len(params) != len(self.param_specs):
            raise TypeError(f"the bank takes {len(self.param_specs)} tensors, got {len(params)}")
        pieces, iv = self.rounded()
        by_spec = dict(zip(self.param_specs, params))
        out: list[Tensor | None] = [None] * (2 * len(self.specs))
        cached = []
        for b, block in enumerate(self.blocks):
            wq = self._quantize_block(b, [by_spec[n] for n in block.specs], pieces[b])
            cached.append(wq.detach())
            for n, part in zip(block.specs, wq.split(block.numels)):
                out[2 * n] = part.view(self.specs[n].shape)
        self._last = (self._key(params), cached)
        i_of = dict(zip(self.i_specs, iv))
        for n, piece in zip(self.rest, pieces[len(self.blocks):]):
            spec = self.specs[n]
            fv = piece.view(spec.group)
            out[2 * n] = self._clip_param(spec, by_spec[n], fv, i_of[n], not self.training) if spec.role == "param" else fv
            out[2 * n + 1] = i_of.get(n)
        return tuple(out)

    def _key(self, params: list[Tensor]) -> tuple[Any, ...]:
        """Identity of the current weights and bit counts (versions change on in-place updates)."""
        return tuple((p.data_ptr(), p._version, p.dtype) for p in params) + (self.f.data_ptr(), self.f._version)

    def _quantize_block(self, b: int, params: list[Tensor], fpiece: Tensor) -> Tensor:
        """A block's weights, flat, rounded exactly (with HGQ gradients)."""
        block = self.blocks[b]
        flat = params[0].reshape(-1) if len(params) == 1 else torch.cat([p.reshape(-1) for p in params])
        f_el = fpiece if block.per_element else fpiece[self._gidx(b, fpiece.device)]
        return ExactRound.apply(flat, f_el.to(flat.dtype), self.specs[block.specs[0]].config.round)

    def _block_values(self, params: list[Tensor], pieces: list[Tensor]) -> list[Tensor]:
        """Quantized flat weights of every block: from the last forward if nothing changed since."""
        if self._last is not None and self._last[0] == self._key(params):
            return self._last[1]
        by_spec = dict(zip(self.param_specs, params))
        with torch.no_grad():
            return [self._quantize_block(b, [by_spec[n] for n in blk.specs], pieces[b]) for b, blk in enumerate(self.blocks)]

    @staticmethod
    def _clip_param(spec: QSpec, p: Tensor, fv: Tensor, iv: Tensor, exact: bool) -> Tensor:
        """A saturating weight quantizer (signed, learned integer bits)."""
        k = torch.ones_like(fv)
        if exact:
            return quantize_exact(p, k, iv, fv, spec.config.round, spec.config.overflow)
        symmetric = spec.config.overflow is OverflowMode.SAT_SYM
        return ClipQuant.apply(p, fv, iv, k, spec.config.round, symmetric)

    # ------------------------------------------------------------------ bit counts
    def param_bits(self, params: list[Tensor], pieces: list[Tensor], iv: list[Tensor]) -> Tensor:
        """Bits (``relu(k+i+f) * nonzero``) of every param element: free blocks, then clip params.

        Differentiable in ``f`` (and learned ``i``); ``k`` and derived ``i`` are constants.
        """
        by_spec = dict(zip(self.param_specs, params))
        parts = []
        for b, (block, wq) in enumerate(zip(self.blocks, self._block_values(params, pieces))):
            f_el = pieces[b] if block.per_element else pieces[b][self._gidx(b, pieces[b].device)]
            ki = self._block_ki(b, wq, f_el.detach())
            parts.append(torch.relu(ki + f_el) * (wq != 0).to(f_el.dtype))
        i_of = dict(zip(self.i_specs, iv))
        for n, piece in zip(self.rest, pieces[len(self.blocks):]):
            spec = self.specs[n]
            if spec.role != "param":
                continue
            fv = piece.view(spec.group)
            with torch.no_grad():
                q = self._clip_param(spec, by_spec[n], fv, i_of[n], True)
            bits = torch.relu(1.0 + i_of[n] + fv).expand(spec.shape)
            parts.append((bits * (q != 0).to(bits.dtype)).reshape(-1))
        return torch.cat(parts) if parts else self.f.new_zeros(0)

    def _block_ki(self, b: int, wq: Tensor, f_el: Tensor) -> Tensor:
        """``k + i`` per element of a free block from its quantized values."""
        block = self.blocks[b]
        if block.per_element:
            k, i = needed_ki(wq, wq, f_el)
            return k + i
        gidx = self._gidx(b, wq.device)
        n = self._block_groups(block)
        hi = wq.new_full((n,), -math.inf).scatter_reduce(0, gidx, wq, "amax")
        lo = wq.new_full((n,), math.inf).scatter_reduce(0, gidx, wq, "amin")
        k, i = needed_ki(lo, hi, f_el.new_zeros(n).scatter(0, gidx, f_el))
        return (k + i)[gidx]

    def param_values(
        self, params: list[Tensor], pieces: tuple[list[Tensor], list[Tensor]] | None = None
    ) -> dict[int, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Exact quantized value and per-element ``(k, i, f)`` of every param spec (for export)."""
        pieces, iv = self.rounded() if pieces is None else pieces
        by_spec = dict(zip(self.param_specs, params))
        out = {}
        with torch.no_grad():
            for b, block in enumerate(self.blocks):
                wq = self._quantize_block(b, [by_spec[n] for n in block.specs], pieces[b])
                f_el = pieces[b] if block.per_element else pieces[b][self._gidx(b, pieces[b].device)]
                f_el = f_el.to(wq.dtype)
                ki = self._block_ki(b, wq, f_el)
                k = self._block_k(b, wq)
                for n, a, kk, ii, ff in zip(block.specs, *(t.split(block.numels) for t in (wq, k, ki - k, f_el))):
                    shape = self.specs[n].shape
                    out[n] = (a.view(shape), kk.view(shape), ii.view(shape), ff.view(shape))
            i_of = dict(zip(self.i_specs, iv))
            for n, piece in zip(self.rest, pieces[len(self.blocks):]):
                spec = self.specs[n]
                if spec.role == "param":
                    fv = piece.view(spec.group)
                    q = self._clip_param(spec, by_spec[n], fv, i_of[n], True)
                    full = [t.expand(spec.shape) for t in (torch.ones_like(fv), i_of[n], fv)]
                    out[n] = (q, *full)
        return out

    def _block_k(self, b: int, wq: Tensor) -> Tensor:
        block = self.blocks[b]
        neg = (wq < 0).to(wq.dtype)
        if block.per_element:
            return neg
        gidx = self._gidx(b, wq.device)
        g = wq.new_zeros(self._block_groups(block)).scatter_reduce(0, gidx, neg, "amax")
        return g[gidx]
