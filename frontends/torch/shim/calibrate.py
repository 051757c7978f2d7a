"""Calibration: record every activation quantizer's exact value range on representative data.

WRAP quantizers take their integer bits from these ranges (``k`` = any negative value seen,
``i`` = the fewest integer bits that hold the range), so after calibration the shim, and the
graph imported from it, cover the calibration data without overflow. The recorded ranges are
widened by ``2**margin_bits`` (default: one guard integer bit, as plain imports, see
``frontends/calibration.py``), so new data up to twice the calibration range does not wrap
either; ``margin_bits=0`` gives the tightest types. Calibration runs in float64 (exact) and
returns the module to its dtype and mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...calibration import GUARD_BITS
from ..importer.records import may_be_negative
from .quant import group_ki, needed_ki
from .quantizers import ActQuantizer

if TYPE_CHECKING:
    from .module import QuantizedModule


def _batches(data: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    items = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    tensors = [torch.as_tensor(np.asarray(d)) if not isinstance(d, torch.Tensor) else d for d in items]
    n = tensors[0].shape[0]
    for t in tensors:
        if t.shape[0] != n:
            raise ValueError(f"calibration inputs have different batch sizes {[int(x.shape[0]) for x in tensors]}")
    for start in range(0, n, batch_size):
        yield tuple(t[start : start + batch_size] for t in tensors)


def _dtype_device(qmod: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in qmod.parameters():
        return p.dtype, p.device
    return torch.float32, torch.device("cpu")


@torch.no_grad()
def calibrate(
    qmod: QuantizedModule, data: Any, batch_size: int = 1024, margin_bits: int = GUARD_BITS
) -> QuantizedModule:
    """Reset and record the value range of every activation quantizer on ``data`` (in place).

    ``data``: a batched tensor or array, or a tuple of them for several model inputs.
    ``margin_bits``: integer bits above what the data need (the ranges are scaled by
    ``2**margin_bits``; quantized range ends stay on their grids).
    """
    if margin_bits < 0:
        raise ValueError(f"margin_bits must be >= 0, got {margin_bits}")
    acts = [m for m in qmod.modules() if isinstance(m, ActQuantizer)]
    was_training = qmod.training
    dtype, device = _dtype_device(qmod)
    qmod.eval()
    qmod.to(torch.float64)
    qmod.bank.reset_ranges()
    for m in acts:
        m.calibrating = True
    try:
        for batch in _batches(data, batch_size):
            qmod(*(b.to(device=device, dtype=torch.float64) for b in batch))
    finally:
        for m in acts:
            m.calibrating = False
        qmod.to(dtype)
        qmod.train(was_training)
    if margin_bits:
        bank = qmod.bank
        bank.vmax.mul_(2.0**margin_bits)
        bank.vmin.mul_(2.0**margin_bits)
        # the guard covers the sign too: a value that can be negative keeps a sign bit though
        # the data stayed >= 0 (see hgqir.frontends.calibration)
        for n in may_be_negative(qmod.plan.records, lambda s: bank.specs[s].role == "act"):
            if bank.specs[n].config.signed is None and n in bank.range_offsets:
                vmax, vmin = bank.ranges(n)
                live = (vmax > 0) | (vmin < 0)
                tiny = torch.full_like(vmin, -torch.finfo(vmin.dtype).tiny)  # negative, below every LSB
                vmin.copy_(torch.where(live & (vmin >= 0), tiny, vmin))
    return qmod


@torch.no_grad()
def init_integer_bits(qmod: QuantizedModule) -> None:
    """Start every learned integer bit count at what the (calibrated) ranges or values need."""
    from .module import fetch

    bank = qmod.bank
    if bank.i is None:
        return
    fr = torch.round(bank.f.detach())
    starts = []
    for n in bank.i_specs:
        spec = bank.specs[n]
        f = fr[bank.f_offset(n) :][: spec.group_size].view(spec.group)
        if spec.config.i is not None:
            starts.append(torch.full((spec.group_size,), float(spec.config.i)))
            continue
        if spec.role == "param":
            _, i = group_ki(fetch(qmod.body, spec.source or "").detach().to(f.dtype), spec.group, f)
        else:
            vmax, vmin = bank.ranges(n)
            _, i = needed_ki(vmin.to(f.dtype), vmax.to(f.dtype), f)
        starts.append(torch.clamp(i, min=-f).reshape(-1))
    bank.i.copy_(torch.cat(starts).to(bank.i.dtype))
