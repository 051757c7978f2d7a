"""Read the learned types (and quantized constants) out of a shim, in float64.

Everything is folded and rounded in float64 with the same torch functions the shim uses in
eval mode, so that the imported graph agrees exactly with ``qmod.eval().double()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .bits import param_values
from .quant import group_ki

if TYPE_CHECKING:
    from .module import QuantizedModule

Types = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _ints(t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(_np(t).astype(np.int64), shape).copy()


@torch.no_grad()
def quantizer_types(qmod: QuantizedModule) -> Types:
    """Per spec: ``k``, ``i``, ``f`` integer arrays of the tensor's shape (PyTorch layout) and
    the quantized float64 values of weights, biases, constants and folded batchnorm parameters."""
    bank = qmod.bank
    params = [p.double() for p in qmod.params()]
    out: Types = {}
    for n, (v, k, i, f) in param_values(bank, params).items():
        shape = bank.specs[n].shape
        out[n] = (_ints(k, shape), _ints(i, shape), _ints(f, shape), _np(v).reshape(shape))
    fr = torch.round(bank.f.detach()).double()
    for n, v in qmod.derived_values(torch.float64).items():
        spec = bank.specs[n]
        f = fr[bank.f_offset(n) :][: spec.group_size].view(spec.group)
        k, i = group_ki(v, spec.group, f)
        out[n] = (_ints(k, spec.shape), _ints(i, spec.shape), _ints(f, spec.shape), _np(v))
    i_all = bank.i_views(torch.round(bank.i.detach()).double()) if bank.i is not None else {}
    for n in bank.act_specs:
        spec = bank.specs[n]
        m = qmod.body.get_submodule(qmod.plan.modules[n])
        f = fr[bank.f_offset(n) :][: spec.group_size].view(spec.group)
        k, i, ff = m.kif(f, *bank.ranges(n), i_all.get(n))  # type: ignore[operator]
        out[n] = (*(np.broadcast_to(a, spec.shape).copy() for a in (k, i, ff)), None)
    return out
