"""Read the learned types (and quantized constants) out of a shim, in float64.

Everything is folded and rounded in float64 with the same torch functions the shim uses in
eval mode, so that the imported graph agrees exactly with ``qmod.eval().double()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .torch_quant import group_ki

if TYPE_CHECKING:
    from .torch_shim import QuantizedModule

Types = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _ints(t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(_np(t).astype(np.int64), shape).copy()


@torch.no_grad()
def quantizer_types(qmod: QuantizedModule) -> Types:
    """Per spec: ``k``, ``i``, ``f`` integer arrays of the tensor's shape (PyTorch layout) and
    the quantized float64 values of weights, biases, constants and folded batchnorm parameters."""
    from .torch_shim import fetch

    bank = qmod.bank
    pieces, iv = bank.rounded()
    pieces = [p.double() for p in pieces]
    iv = [v.double() for v in iv]
    rest = dict(zip(bank.rest, pieces[len(bank.blocks):]))
    i_of = dict(zip(bank.i_specs, iv))
    params = [fetch(qmod.body, bank.specs[n].source or "").double() for n in bank.param_specs]
    out: Types = {}
    was = bank.training
    bank.train(False)
    try:
        for n, (v, k, i, f) in _param_values(bank, params, pieces, iv).items():
            shape = bank.specs[n].shape
            out[n] = (_ints(k, shape), _ints(i, shape), _ints(f, shape), _np(v).reshape(shape))
    finally:
        bank.train(was)
    for name, (s_spec, o_spec) in qmod.plan.bn.items():
        bn = qmod.body.get_submodule(name)
        values = bn.affine(rest[s_spec].view(-1), rest[o_spec].view(-1), torch.float64)  # type: ignore[operator]
        for n, v in zip((s_spec, o_spec), values):
            spec = bank.specs[n]
            f = rest[n].view(spec.group)
            k, i = group_ki(v, spec.group, f)
            out[n] = (_ints(k, spec.shape), _ints(i, spec.shape), _ints(f, spec.shape), _np(v))
    for n in bank.rest:
        spec = bank.specs[n]
        if spec.role != "act":
            continue
        m = qmod.body.get_submodule(qmod.plan.modules[n])
        k, i, f = m.kif(rest[n].view(spec.group), i_of.get(n))  # type: ignore[operator]
        out[n] = tuple(np.broadcast_to(a, spec.shape).copy() for a in (k, i, f)) + (None,)  # type: ignore[assignment]
    return out


def _param_values(bank, params, pieces, iv):  # type: ignore[no-untyped-def]
    """The bank's exact param values in float64 (the bank's ``f`` pieces given in float64)."""
    return bank.param_values(params, pieces=(pieces, iv))
