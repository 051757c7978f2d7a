"""Bit counts of a shim's quantizers, without autograd: for EBOPs and for the importer.

The flat bit-count vector lists, in order: every element of the free weight blocks, every
element of the saturating weights, every element of the folded batchnorm parameters, then every
activation group. Widths are ``relu(k + i + f)`` (pruned elements count 0), times "nonzero" for
weights: exactly what :mod:`hgqir.passes.bops` counts on the imported graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .bank import QuantBank
from .quant import group_ki, needed_ki, width_of_mantissas

Tensor = torch.Tensor


class BitLayout:
    """Where every entry of the bit-count vector comes from (``f`` index, learned ``i`` index)."""

    def __init__(self, bank: QuantBank) -> None:
        to_f, to_i, cols = [], [], {}
        f_off = bank.f_offsets
        i_off, base = {}, 0
        for n in bank.i_specs:
            i_off[n], base = base, base + bank.specs[n].group_size
        pos = 0
        ordered = [n for b in bank.blocks for n in b.specs] + [n for n in bank.rest if bank.specs[n].role != "act"]
        for n in ordered:
            s = bank.specs[n]
            g = s.group_index()
            cols[n] = np.arange(pos, pos + s.size).reshape(s.shape)
            to_f.append(g + f_off[n])
            to_i.append(g + i_off[n] if n in i_off else np.full(s.size, -1))
            pos += s.size
        for n in bank.act_specs:
            s = bank.specs[n]
            cols[n] = np.broadcast_to(np.arange(pos, pos + s.group_size).reshape(s.group), s.shape)
            to_f.append(np.arange(s.group_size) + f_off[n])
            to_i.append(np.arange(s.group_size) + i_off[n] if n in i_off else np.full(s.group_size, -1))
            pos += s.group_size
        self.columns: dict[int, np.ndarray] = cols
        """Column of every element of every spec's tensor (activations: of its group)."""
        self.size = pos
        self.to_f = np.concatenate(to_f).astype(np.int64) if to_f else np.zeros(0, dtype=np.int64)
        to_i_all = np.concatenate(to_i).astype(np.int64) if to_i else np.zeros(0, dtype=np.int64)
        self.i_sel = np.nonzero(to_i_all >= 0)[0]
        self.to_i = to_i_all[self.i_sel]
        self.f_identity = bool(np.array_equal(self.to_f, np.arange(bank.f.numel())))
        self.simple = bank.simple_layout
        """Only per-element free weights and range-following activations (the fast bit count)."""
        act_i = [n for n in bank.act_specs if n in i_off]
        act_pos = {n: sum(bank.specs[m].group_size for m in bank.act_specs[:k]) for k, n in enumerate(bank.act_specs)}
        self.act_i_pos = (
            np.concatenate([np.arange(bank.specs[n].group_size) + act_pos[n] for n in act_i]) if act_i else None
        )
        self.act_i_src = (
            np.concatenate([np.arange(bank.specs[n].group_size) + i_off[n] for n in act_i]) if act_i else None
        )
        forced = [n for n in bank.act_specs if bank.specs[n].config.signed is not None]
        self.act_k_pos = (
            np.concatenate([np.arange(bank.specs[n].group_size) + act_pos[n] for n in forced]) if forced else None
        )
        """Activation groups whose sign bit is forced by ``signed`` (None: none is), and its value."""
        self.act_k_val = (
            np.concatenate([np.full(bank.specs[n].group_size, float(bank.specs[n].config.signed)) for n in forced])
            if forced
            else None
        )


def block_ki(bank: QuantBank, b: int, wq: Tensor, f_el: Tensor) -> tuple[Tensor, Tensor]:
    """``k`` and ``i`` per element of a free block, from its quantized values."""
    block = bank.blocks[b]
    if block.per_element:
        return needed_ki(wq, wq, f_el)
    gidx = bank.gidx(b, wq.device)
    n = block.groups
    hi = wq.new_full((n,), -torch.inf).scatter_reduce(0, gidx, wq, "amax")
    lo = wq.new_full((n,), torch.inf).scatter_reduce(0, gidx, wq, "amin")
    k, i = needed_ki(lo, hi, f_el.new_zeros(n).scatter(0, gidx, f_el))
    return k[gidx], i[gidx]


def _block_values(bank: QuantBank, params: list[Tensor], pieces: tuple[Tensor, ...]) -> list[Tensor]:
    """Quantized flat weights of every block (exactly in eval, as the training forward in training)."""
    by_spec = dict(zip(bank.param_specs, params, strict=True))
    return [
        bank.quantize_block(b, [by_spec[n] for n in blk.specs], pieces[b], not bank.training)
        for b, blk in enumerate(bank.blocks)
    ]


def _nonzero(t: Tensor) -> Tensor:
    return torch.sign(t).abs()


@torch.no_grad()
def bit_counts(bank: QuantBank, layout: BitLayout, params: list[Tensor], derived: dict[int, Tensor]) -> Tensor:
    """The bit-count vector (see the module docstring); ``derived`` holds batchnorm values by spec."""
    if layout.simple:
        return _simple_bit_counts(bank, params)
    fr = torch.round(bank.f)
    pieces = fr.split(bank.f_sizes)
    parts = []
    for b, wq in enumerate(_block_values(bank, params, pieces)):
        f_el = pieces[b] if bank.blocks[b].per_element else pieces[b][bank.gidx(b, wq.device)]
        f_el = f_el.to(wq.dtype)
        if bank.blocks[b].per_element:  # each weight's own width, from its integer mantissa
            m = wq * torch.exp2(f_el)
            parts.append(width_of_mantissas(m, m))
        else:
            k, i = block_ki(bank, b, wq, f_el)
            parts.append(torch.relu(k + i + f_el) * _nonzero(wq))
    i_of = bank.i_views(torch.round(bank.i)) if bank.i is not None else {}
    by_spec = dict(zip(bank.param_specs, params, strict=True))
    for n, piece in zip(bank.rest, pieces[len(bank.blocks) :], strict=True):
        spec = bank.specs[n]
        f = piece.view(spec.group)
        if spec.role == "param":
            q = bank.clip_param(spec, by_spec[n], f, i_of[n], True)
            parts.append((torch.relu(1.0 + i_of[n] + f).expand(spec.shape) * _nonzero(q)).reshape(-1))
        elif spec.role == "derived":
            value = derived[n]
            k, i = group_ki(value, spec.group, f.to(value.dtype))
            parts.append((torch.relu(k + i + f).expand(spec.shape) * _nonzero(value)).reshape(-1))
    parts.append(_act_bits(bank, layout, fr[fr.numel() - bank.n_act :]))
    return torch.cat([p.to(fr.dtype) for p in parts])


def _simple_bit_counts(bank: QuantBank, params: list[Tensor]) -> Tensor:
    """Per-element weights and range-following activations only: the bit-count vector lines up
    with ``f`` and every width comes from one mantissa-range computation."""
    fr = torch.round(bank.f)
    values = _block_values(bank, params, fr.split(bank.f_sizes))
    scale = torch.exp2(fr)
    n_w = fr.numel() - bank.n_act
    wq = values[0] if len(values) == 1 else torch.cat(values) if values else fr.new_zeros(0)
    m_w = wq * scale[:n_w].to(wq.dtype)
    if not bank.n_act:
        return width_of_mantissas(m_w, m_w).to(fr.dtype)
    s_a = scale[n_w:]
    lo = torch.cat([m_w.to(fr.dtype), bank.vmin.to(fr.dtype) * s_a])
    hi = torch.cat([m_w.to(fr.dtype), bank.vmax.to(fr.dtype) * s_a])
    return width_of_mantissas(lo, hi)


def _act_bits(bank: QuantBank, layout: BitLayout, fr_act: Tensor) -> Tensor:
    if layout.act_i_pos is None and layout.act_k_pos is None:  # widths straight from the ranges
        scale = torch.exp2(fr_act)
        return width_of_mantissas(bank.vmin.to(fr_act.dtype) * scale, bank.vmax.to(fr_act.dtype) * scale)
    k, i = needed_ki(bank.vmin.to(fr_act.dtype), bank.vmax.to(fr_act.dtype), fr_act)
    if layout.act_k_pos is not None:  # as ActQuantizer.ki: the forced sign bit
        pos = bank.const("act_k_pos", layout.act_k_pos, k.device)
        val = bank.const("act_k_val", layout.act_k_val, k.device)  # type: ignore[arg-type]
        k = k.index_put((pos,), val.to(k.dtype))
    if bank.i is not None and layout.act_i_pos is not None:
        pos = bank.const("act_i_pos", layout.act_i_pos, i.device)
        src = bank.const("act_i_src", layout.act_i_src, i.device)  # type: ignore[arg-type]
        i = i.index_put((pos,), torch.round(bank.i)[src].to(i.dtype))
    return torch.relu(k + i + fr_act)


@torch.no_grad()
def param_values(bank: QuantBank, params: list[Tensor]) -> dict[int, tuple[Tensor, ...]]:
    """Exact quantized value and per-element ``k``, ``i``, ``f`` of every param spec (for export)."""
    fr = torch.round(bank.f).to(params[0].dtype) if params else torch.round(bank.f)
    pieces = fr.split(bank.f_sizes)
    by_spec = dict(zip(bank.param_specs, params, strict=True))
    out: dict[int, tuple[Tensor, ...]] = {}
    for b, block in enumerate(bank.blocks):
        wq = bank.quantize_block(b, [by_spec[n] for n in block.specs], pieces[b], True)
        f_el = pieces[b] if block.per_element else pieces[b][bank.gidx(b, wq.device)]
        k, i = block_ki(bank, b, wq, f_el)
        for n, *parts in zip(block.specs, *(t.split(block.numels) for t in (wq, k, i, f_el)), strict=True):
            out[n] = tuple(p.view(bank.specs[n].shape) for p in parts)
    i_of = bank.i_views(torch.round(bank.i).to(fr.dtype)) if bank.i is not None else {}
    for n, piece in zip(bank.rest, pieces[len(bank.blocks) :], strict=True):
        spec = bank.specs[n]
        if spec.role == "param":
            fv = piece.view(spec.group)
            q = bank.clip_param(spec, by_spec[n], fv, i_of[n], True)
            out[n] = (q, *(t.expand(spec.shape) for t in (torch.ones_like(fv), i_of[n], fv)))
    return out


def gradient_to_params(layout: BitLayout, bank: QuantBank, grad_bits: Tensor) -> tuple[Tensor, Any]:
    """Map a gradient over the bit-count vector onto ``f`` (and learned ``i``)."""
    if layout.f_identity:
        gf = grad_bits
    else:
        to_f = bank.const("to_f", layout.to_f, grad_bits.device)
        gf = grad_bits.new_zeros(bank.f.numel()).index_add_(0, to_f, grad_bits)
    gi = None
    if bank.i is not None:
        sel = bank.const("i_sel", layout.i_sel, grad_bits.device)
        to_i = bank.const("to_i", layout.to_i, grad_bits.device)
        gi = grad_bits.new_zeros(bank.i.numel()).index_add_(0, to_i, grad_bits[sel])
    return gf, gi
