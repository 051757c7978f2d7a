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

from ..fast.fuse import FusedStep, Slot, fused_step, slot
from ..options import ShimConfig
from .bank import QuantBank
from .bits import BitLayout, bit_counts
from .build import Plan
from .ebops import RegFn, build_index
from .quantizers import ActQuantizer, QBatchNorm

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
        self._beta_seen: tuple[Tensor | None, int, float] = (None, -1, 0.0)
        self.bit_layout = BitLayout(self.bank)
        self.ebops_index = build_index(self.bit_layout, plan.costs)
        self._slots: list[Slot] | None = None
        self._wire_native()
        self.fuse_layers = True
        """Train on fused chains of layers (:mod:`.torch_fuse`) when the body allows; False runs
        the quantizer-by-quantizer kernels (same values, slower)."""
        self._fused: FusedStep | None | bool = False  # False: not built yet
        self._ebops_args: tuple[Tensor, Tensor] | None = None

    def _wire_native(self) -> None:
        """Let plain activation quantizers take raw ``f`` views in fused training steps."""
        consumers = set()
        for spec, name in self.plan.modules.items():
            module = self.body.get_submodule(name)
            if type(module) is ActQuantizer and not module.learns_i:
                module.use_native(self.bank.native, self.bank.specs[spec])
                consumers.add(spec)
        self.bank.wire_native(consumers)

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
        out = None
        if self.training and self.fuse_layers:
            step = self._fused if self._fused is not False else self._fused_step()
            if step is not None:
                out = step.run(inputs)  # type: ignore[union-attr]
        if out is None:
            out = self.body(*inputs)
        if self.training and self.config.sync_stats and _distributed():
            _sync_running_ranges(self)
        return out

    def _fused_step(self) -> FusedStep | None:
        """The fused training step (built on the first training forward that can use it)."""
        step = self._fused
        if step is False:
            if not self.bank.use_native():
                return None
            step = self._fused = fused_step(self)
        return step  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        # generated code and slots (references into the modules' dicts) are rebuilt, not pickled
        return {**self.__dict__, "_fused": False, "_slots": None}

    def bit_parameters(self) -> list[nn.Parameter]:
        """The learned bitwidths (``f``, and ``i`` of saturating quantizers), e.g. for their own
        optimizer parameter group with a larger learning rate."""
        return [p for p in (self.bank.f, self.bank.i) if p is not None]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (the model's own weights)."""
        bits = {id(p) for p in self.bit_parameters()}
        return [p for p in self.parameters() if id(p) not in bits]

    # ------------------------------------------------------------------ EBOPs
    def param_slots(self) -> list[Slot]:
        """Where each tensor the bank quantizes lives (its module's parameter or buffer dict and
        its name), in bank order: modules stay put across ``.to()`` and ``.double()``."""
        if self._slots is None:
            self._slots = []
            for n in self.bank.param_specs:
                path, _, name = (self.bank.specs[n].source or "").rpartition(".")
                self._slots.append(slot(self.body.get_submodule(path) if path else self.body, name))
        return self._slots

    def params(self) -> list[Tensor]:
        """The tensors the bank quantizes (weights, biases, constants), in bank order."""
        return [d[k] for d, k in self.param_slots()]

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
        """Bits of every quantizer element / group (no gradient): see :mod:`.torch_bits`."""
        return bit_counts(self.bank, self.bit_layout, self.params(), self.derived_values())

    def ebops(self) -> Tensor:
        """Current EBOPs (a differentiable scalar): what ``hgqir.bops(g).total`` reports."""
        return self._cost(1.0, 0.0)

    def regularization(self) -> Tensor:
        """``beta * EBOPs`` plus ``bit_l1 * (sum of all bitwidths)``: add it to the task loss.

        After a fused training forward this is the value its last kernel call computed with the
        ranges it had just updated (:class:`.torch_fuse.StepCost`); the same value and gradient
        as computing it here, without a call of its own."""
        scale, l1 = self._scales()
        kept = self._fused.take_cost(scale, l1) if self._fused else None
        return kept if kept is not None else self._cost(scale, l1)

    def _scales(self) -> tuple[float, float]:
        """``beta`` and ``bit_l1`` as floats. Reading a tensor's value is an ATen call: beta's is
        kept while its buffer is the same tensor at the same version."""
        b = self._buffers["_beta"]
        assert b is not None
        seen = self._beta_seen
        if seen[0] is not b or seen[1] != b._version:
            seen = self._beta_seen = (b, b._version, float(b))
        return seen[2], float(self.config.bit_l1)

    def _cost(self, scale: float, l1: float) -> Tensor:
        bank = self.bank
        if bank.use_native():
            params = self.params()
            ws = [params[k] for k in bank.native_weight_order]
            f = bank.f
            if all(w.dtype == f.dtype for w in ws):
                index, values = self._native_ebops_index()
                return torch.ops.hgqir.ebops.default(f, ws, bank.vmax, bank.vmin, index, values, scale, l1)
        return RegFn.apply(bank.f, bank.i, self, scale, l1)

    def _native_ebops_index(self) -> tuple[Tensor, Tensor]:
        """The packed index of the fused EBOPs kernel (static: built on first use)."""
        if self._ebops_args is None:
            bank = self.bank
            sizes = [len(b.specs) for b in bank.blocks]
            self._ebops_args = self.ebops_index.native_tensors(sizes, bank._block_codes)
        return self._ebops_args

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
