"""The trainable shim: :class:`QuantizedModule`, the quantized twin of a PyTorch module.

>>> import torch, hgqir
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> qmod = hgqir.quantize_torch(net, torch.randn(16, 4), beta=1e-5)
>>> loss = qmod(torch.randn(8, 4)).square().mean() + qmod.regularization()
>>> loss.backward()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from .torch_bank import QuantBank
from .torch_build import Plan
from .torch_config import ShimConfig
from .torch_ebops import EbopsFn, build_index
from .torch_modules import ActQuantizer, QBatchNorm
from .torch_quant import RoundSTE, group_ki, needed_ki

Tensor = torch.Tensor


def fetch(module: nn.Module, path: str) -> Tensor:
    """A parameter or buffer by dotted path."""
    obj: Any = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class QuantizedModule(nn.Module):
    """A PyTorch module with learned per-element fixed-point types (an hgqir shim).

    Train it like the original (``loss = task + qmod.regularization()``); ``qmod.ebops()`` is
    the differentiable EBOPs estimate of the hardware cost, exactly what ``hgqir.bops`` gives
    on the imported graph. In eval mode the module computes the bit-exact fixed-point result
    (use ``.double()`` for exact agreement with the IR). All state (the flat ``body.hgq.f``
    bitwidth parameter, running ranges, ``beta``) lives in the module: ``state_dict``,
    ``.to(device)``, ``.double()`` and DistributedDataParallel work as for any module.
    """

    def __init__(self, body: fx.GraphModule, plan: Plan, config: ShimConfig, beta: float = 0.0) -> None:
        super().__init__()
        self.body = body
        self.plan = plan
        self.config = config
        self.register_buffer("_beta", torch.tensor(float(beta)))
        self._index = build_index(self.bank, plan.costs)
        self.register_forward_hook(_sync_running_ranges)

    @property
    def bank(self) -> QuantBank:
        return self.body.hgq  # type: ignore[return-value]

    @property
    def beta(self) -> float:
        """Weight of EBOPs in :meth:`regularization`; assign to schedule it."""
        return float(self._beta)

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta.fill_(float(value))

    def forward(self, *inputs: Tensor) -> Any:
        return self.body(*inputs)

    # ------------------------------------------------------------------ EBOPs
    def act_modules(self) -> list[ActQuantizer]:
        """Activation quantizers in bank order (the last block of the bit-count vector)."""
        return [self.body.get_submodule(self.plan.modules[n]) for n in self.bank.rest  # type: ignore[misc]
                if self.bank.specs[n].role == "act"]

    def bit_counts(self) -> Tensor:
        """Differentiable bits of every quantizer group, laid out as :mod:`.torch_ebops` expects."""
        bank = self.bank
        fr_flat = RoundSTE.apply(bank.f)
        pieces, iv = bank.rounded(fr_flat)
        params = [fetch(self.body, bank.specs[n].source or "") for n in bank.param_specs]
        parts = [bank.param_bits(params, pieces, iv)]
        rest = dict(zip(bank.rest, pieces[len(bank.blocks):]))
        parts += self._derived_bits(rest)
        parts.append(self._act_bits(fr_flat, rest, dict(zip(bank.i_specs, iv))))
        return torch.cat([p.reshape(-1) for p in parts])

    def _derived_bits(self, rest: dict[int, Tensor]) -> list[Tensor]:
        out = []
        done: dict[str, tuple[Tensor, Tensor]] = {}
        for n in self.bank.rest:
            spec = self.bank.specs[n]
            if spec.role != "derived":
                continue
            name = self.plan.modules[n]
            bn: QBatchNorm = self.body.get_submodule(name)  # type: ignore[assignment]
            s_spec, o_spec = self.plan.bn[name]
            if name not in done:
                with torch.no_grad():
                    done[name] = bn.affine(rest[s_spec].view(-1), rest[o_spec].view(-1))
            value = done[name][0 if n == s_spec else 1]
            f = rest[n].view(spec.group).to(value.dtype)
            k, i = group_ki(value, spec.group, f.detach())
            out.append(torch.relu(k + i + f).expand(spec.shape) * (value != 0).to(f.dtype))
        return out

    def _act_bits(self, fr_flat: Tensor, rest: dict[int, Tensor], i_of: dict[int, Tensor]) -> Tensor:
        acts = self.act_modules()
        if not acts:
            return fr_flat.new_zeros(0)
        if not i_of:  # every activation quantizer follows its range: one flat computation
            fr_act = fr_flat[fr_flat.numel() - self.bank.n_act_groups:]
            vmax = torch.cat([m.vmax.reshape(-1) for m in acts]).to(fr_act.dtype)
            vmin = torch.cat([m.vmin.reshape(-1) for m in acts]).to(fr_act.dtype)
            k, i = needed_ki(vmin, vmax, fr_act.detach())
            return torch.relu(k + i + fr_act)
        bits = []
        act_specs = [n for n in self.bank.rest if self.bank.specs[n].role == "act"]
        for n, m in zip(act_specs, acts):
            f = rest[n].view(self.bank.specs[n].group)
            i = i_of.get(n)
            k, ii = m.ki(f.detach(), i)
            bits.append(torch.relu(k + (ii if i is None else i.to(f.dtype)) + f).reshape(-1))
        return torch.cat(bits)

    def _ebops_of(self, bits: Tensor) -> Tensor:
        return EbopsFn.apply(bits, self._index)

    def ebops(self) -> Tensor:
        """Current EBOPs (a differentiable scalar): what ``hgqir.bops(g).total`` reports."""
        return self._ebops_of(self.bit_counts())

    def regularization(self) -> Tensor:
        """``beta * EBOPs`` plus ``bit_l1 * (sum of all bitwidths)``: add it to the task loss."""
        bits = self.bit_counts()
        reg = self._beta.to(bits.dtype) * self._ebops_of(bits)
        if self.config.bit_l1:
            reg = reg + self.config.bit_l1 * bits.sum()
        return reg

    # ------------------------------------------------------------------ inspection
    def quantizer_types(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        """Per spec: integer ``k``, ``i``, ``f`` arrays of its tensor's shape, and its float64
        values for weights, biases, constants and folded batchnorm parameters (None otherwise)."""
        from .torch_export import quantizer_types

        return quantizer_types(self)

    def bitwidths(self) -> dict[str, np.ndarray]:
        """Width ``k + i + f`` (<= 0: pruned) of every element of every quantizer, by name."""
        out = {}
        for n, (k, i, f, _) in self.quantizer_types().items():
            out[self.bank.specs[n].name] = k + i + f
        return out


@torch.no_grad()
def _sync_running_ranges(module: QuantizedModule, args: Any, output: Any) -> None:
    """After a training forward under torch.distributed, make every rank's ranges the union."""
    if not module.training or not module.config.sync_stats:
        return
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    acts = [m for m in module.body.modules() if isinstance(m, ActQuantizer)]
    if not acts:
        return
    flat = torch.cat([m.vmax.reshape(-1) for m in acts] + [-m.vmin.reshape(-1) for m in acts])
    dist.all_reduce(flat, op=dist.ReduceOp.MAX)
    sizes = [m.vmax.numel() for m in acts]
    hi, lo = flat.split([sum(sizes), sum(sizes)])
    for m, h, neg in zip(acts, hi.split(sizes), lo.split(sizes)):
        m.vmax.copy_(h.view_as(m.vmax))
        m.vmin.copy_(-neg.view_as(m.vmin))
