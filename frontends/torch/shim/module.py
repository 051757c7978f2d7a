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

from ..options import ShimConfig
from . import accel
from .bank import QuantBank
from .bits import BitLayout, bit_counts
from .ebops import RegFn, build_index
from .plan import Plan
from .quantizers import QBatchNorm

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
    bitwidth parameter, the ``body.hgq.vmax``/``vmin`` running ranges, ``beta``) lives in the module: ``state_dict``,
    ``.to(device)``, ``.double()`` and DistributedDataParallel work as for any module.
    """

    def __init__(self, body: fx.GraphModule, plan: Plan, config: ShimConfig, beta: float = 0.0) -> None:
        super().__init__()
        self.body = body
        self.plan = plan
        self.config = config
        self.register_buffer("_beta", torch.tensor(float(beta)))
        self.bit_layout = BitLayout(self.bank)
        self.ebops_index = build_index(self.bit_layout, plan.costs)
        self.accelerate = True
        """Use a registered accelerator for training steps (same values); False: the Python path."""
        self._accel: accel.Accelerator | None | bool = False  # False: not prepared yet

    @property
    def accelerator(self) -> accel.Accelerator | None:
        """The accelerator of this shim's training steps (prepared on first use), or None."""
        if self._accel is False:
            self._accel = accel.prepare(self)
        return self._accel  # type: ignore[return-value]

    @property
    def bank(self) -> QuantBank:
        return self.body.hgq  # type: ignore[return-value]

    @property
    def beta(self) -> float:
        """Weight of EBOPs in :meth:`regularization`; assign to change it (or see :meth:`set_epoch`)."""
        return float(self._beta)

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta.fill_(float(value))

    def set_epoch(self, epoch: int) -> float:
        """Set ``beta`` for ``epoch`` from the config's ``beta_schedule`` (call it at the start of
        every epoch); without a schedule ``beta`` is left as it is. Returns ``beta``."""
        if self.config.beta_schedule is not None:
            self.beta = self.config.beta_at(epoch)
        return self.beta

    def forward(self, *inputs: Tensor) -> Any:
        out = None
        if self.training and self.accelerate:
            acc = self.accelerator
            if acc is not None:
                out = acc.forward(inputs)
        if out is None:
            out = self.body(*inputs)
        if self.training and self.config.sync_stats and _distributed():
            _sync_running_ranges(self)
        return out

    def __getstate__(self) -> dict[str, Any]:
        # the accelerator (generated graphs, references into the modules) is prepared again
        return {**self.__dict__, "_accel": False}

    def bit_parameters(self) -> list[nn.Parameter]:
        """The learned bitwidths (``f``, and ``i`` of saturating quantizers), e.g. for their own
        optimizer parameter group with a larger learning rate."""
        return [p for p in (self.bank.f, self.bank.i) if p is not None]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (the model's own weights)."""
        bits = {id(p) for p in self.bit_parameters()}
        return [p for p in self.parameters() if id(p) not in bits]

    # ------------------------------------------------------------------ EBOPs
    def param_sources(self) -> list[tuple[nn.Module, str]]:
        """Module and attribute name of each tensor the bank quantizes, in bank order."""
        out = []
        for n in self.bank.param_specs:
            path, _, name = (self.bank.specs[n].source or "").rpartition(".")
            out.append((self.body.get_submodule(path) if path else self.body, name))
        return out

    def params(self) -> list[Tensor]:
        """The tensors the bank quantizes (weights, biases, constants), in bank order."""
        return [getattr(module, name) for module, name in self.param_sources()]

    def derived_values(self, dtype: torch.dtype | None = None) -> dict[int, Tensor]:
        """Exact folded batchnorm scale and offset by spec (from the running statistics)."""
        out: dict[int, Tensor] = {}
        if not self.plan.bn:
            return out
        fr = torch.round(self.bank.f.detach())
        for name, (s_spec, o_spec) in self.plan.bn.items():
            bn: QBatchNorm = self.body.get_submodule(name)  # type: ignore[assignment]
            fs, fo = (fr[self.bank.f_offset(n) :][: self.bank.specs[n].group_size] for n in (s_spec, o_spec))
            with torch.no_grad():
                out[s_spec], out[o_spec] = bn.affine(fs, fo, dtype)
        return out

    def bit_counts(self) -> Tensor:
        """Bits of every quantizer element / group (no gradient): see :mod:`.bits`."""
        return bit_counts(self.bank, self.bit_layout, self.params(), self.derived_values())

    def ebops(self) -> Tensor:
        """Current EBOPs (a differentiable scalar): what ``hgqir.bops(g).total`` reports."""
        return self.cost(1.0, 0.0)

    def regularization(self) -> Tensor:
        """``beta * EBOPs`` plus ``bit_l1 * (sum of all bitwidths)``: add it to the task loss (with
        ``ShimConfig(resource="lut")``: ``beta`` times the LUTs the cost model predicts for the EBOPs).

        After an accelerated training forward this may be the value that forward already
        computed with the ranges it had just updated: the same value and gradient as computing
        it here, without a call of its own."""
        return self._regularization(self.beta * self.config.resource_scale(), float(self.config.bit_l1), False)

    def cost(self, scale: float, l1: float) -> Tensor:
        """``scale * EBOPs + l1 * sum(bits)``, computed now (differentiable)."""
        return self._regularization(scale, l1, True)

    def _regularization(self, scale: float, l1: float, fresh: bool) -> Tensor:
        acc = self.accelerator if self.accelerate else None
        value = acc.regularization(scale, l1, fresh) if acc is not None else None
        return value if value is not None else RegFn.apply(self.bank.f, self.bank.i, self, scale, l1)

    # ------------------------------------------------------------------ inspection
    def quantizer_types(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        """Per spec: integer ``k``, ``i``, ``f`` arrays of its tensor's shape, and its float64
        values for weights, biases, constants and folded batchnorm parameters (None otherwise)."""
        from .export import quantizer_types

        return quantizer_types(self)

    def bitwidths(self) -> dict[str, np.ndarray]:
        """Width ``k + i + f`` (<= 0: pruned) of every element of every quantizer, by name."""
        out = {}
        for n, (k, i, f, _) in self.quantizer_types().items():
            out[self.bank.specs[n].name] = k + i + f
        return out


def _distributed() -> bool:
    """Training under torch.distributed with more than one rank (checked outside ``no_grad``:
    entering it costs more than the check, on every training step)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def _sync_running_ranges(module: QuantizedModule) -> None:
    """After a training forward under torch.distributed, make every rank's ranges the union."""
    dist = torch.distributed
    bank = module.bank
    flat = torch.cat([bank.vmax, -bank.vmin])
    dist.all_reduce(flat, op=dist.ReduceOp.MAX)
    hi, lo = flat.split([bank.n_act, bank.n_act])
    bank.vmax.copy_(hi)
    bank.vmin.copy_(-lo)
