"""The shim's :class:`~..shim.accel.Accelerator` on the C++ kernels: :class:`KernelTraining`.

A training forward runs the fused graph (:mod:`.fuse`) when the body fuses and
:attr:`KernelTraining.fuse` is on, else the body quantizer by quantizer on the kernels
(:mod:`.kernel_body`); the regularizer is the last chain's kept cost (:class:`.step.StepCost`)
or one ``hgqir::ebops`` call. Both graphs become ``fx.GraphModule`` s over the body's own
submodules (torch.fx generates their code; nothing is kept in the module's state). Whenever the
kernels cannot serve (no gradients, tensors off the CPU, kernels unavailable or switched off by
``HGQIR_TORCH_NATIVE=0``) the accelerator answers None and the shim takes its Python path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor

from . import native
from .access import Slot, slot, version
from .fuse import bank_slots, fused_graph
from .kernel_body import kernel_graph, mode_of
from .plan import EBOPS_HEADER
from .step import ChainCall, StepCost

if TYPE_CHECKING:
    from ..shim.ebops import EbopsIndex
    from ..shim.module import QuantizedModule


class KernelTraining:
    """Training steps of one shim on the kernels (see the module docstring)."""

    def __init__(self, qmod: QuantizedModule) -> None:
        self.qmod = qmod
        self.fuse = True
        """Train on fused chains of layers when the body allows; False runs the quantizer-by-
        quantizer kernels (same values, slower)."""
        self.ran = False
        """The last training forward ran on the kernels."""
        self.bank = bank_slots(qmod)
        bank = qmod.bank
        pos = {n: k for k, n in enumerate(bank.param_specs)}
        sources = [slot(module, name) for module, name in qmod.param_sources()]
        self.weights: list[Slot] = [sources[pos[n]] for b in bank.blocks for n in b.specs]
        """The block weights in block order (what the EBOPs kernel reads)."""
        self._beta_slot = slot(qmod, "_beta")
        self._beta_seen: tuple[Tensor | None, int, float] = (None, -1, 0.0)
        self._fused: fx.GraphModule | None | bool = False  # False: not built yet
        self._kernel: fx.GraphModule | None = None
        self._index: tuple[Tensor, Tensor] | None = None
        self.step_cost: StepCost | None = None
        """The cost kept by the fused graph's last chain (once that graph is built)."""

    # ------------------------------------------------------------------ Accelerator
    def forward(self, inputs: tuple[Tensor, ...]) -> Any | None:
        self.ran = self._usable()
        if not self.ran:
            return None
        module = self.fused_module() if self.fuse else None
        if module is None:
            module = self.kernel_module()
        return module.forward(*inputs)

    def regularization(self, scale: float, l1: float, fresh: bool) -> Tensor | None:
        if not fresh and self.step_cost is not None and self._fused:
            kept = self.step_cost.take(scale, l1)
            if kept is not None:
                return kept
        if not (self.qmod.training and self._usable()):
            return None
        d, k = self.bank[0]
        f = d[k]
        ws = [wd[wk] for wd, wk in self.weights]
        if any(w.dtype != f.dtype for w in ws):
            return None
        index, values = self.ebops_index()
        vmax, vmin = (dd[kk] for dd, kk in self.bank[1:])
        return torch.ops.hgqir.ebops.default(f, ws, vmax, vmin, index, values, scale, l1)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ parts
    def _usable(self) -> bool:
        d, k = self.bank[0]
        return torch.is_grad_enabled() and d[k].is_cpu and native.available()

    def fused_module(self) -> fx.GraphModule | None:
        """The fused training forward (built on first use), or None if the body does not fuse."""
        if self._fused is False:
            graph = fused_graph(self.qmod, self._make_cost)
            self._fused = None if graph is None else fx.GraphModule(self.qmod.body, graph, "FusedStep")
        return self._fused  # type: ignore[return-value]

    def kernel_module(self) -> fx.GraphModule:
        """The body on the kernels, quantizer by quantizer (built on first use)."""
        if self._kernel is None:
            self._kernel = fx.GraphModule(self.qmod.body, kernel_graph(self.qmod), "KernelStep")
        return self._kernel

    def chains(self) -> list[ChainCall]:
        """The chains of the fused forward, in order (none if the body does not fuse)."""
        module = self.fused_module()
        if module is None:
            return []
        return [n.target for n in module.graph.nodes if n.op == "call_function" and isinstance(n.target, ChainCall)]

    def _make_cost(self, plan: Tensor) -> StepCost:
        self.step_cost = StepCost(self.weights, self.bank, self.ebops_index(), self.scales, plan)
        return self.step_cost

    def scales(self) -> tuple[float, float]:
        """``beta`` and ``bit_l1`` as floats. Reading a tensor's value is an ATen call: beta's is
        kept while its buffer is the same tensor at the same version."""
        d, k = self._beta_slot
        b = d[k]
        seen = self._beta_seen
        if seen[0] is not b or seen[1] != version(b):
            seen = self._beta_seen = (b, version(b), float(b))
        return seen[2], float(self.qmod.config.bit_l1)

    def ebops_index(self) -> tuple[Tensor, Tensor]:
        """The packed ``(index, values)`` of the EBOPs kernel (static: built on first use)."""
        if self._index is None:
            bank = self.qmod.bank
            sizes = [len(b.specs) for b in bank.blocks]
            modes = [mode_of(self.qmod, b) for b in bank.blocks]
            self._index = pack_ebops_index(self.qmod.ebops_index, sizes, modes)
        return self._index


def pack_ebops_index(index: EbopsIndex, block_sizes: list[int], block_modes: list[int]) -> tuple[Tensor, Tensor]:
    """The ``(index, values)`` arguments of ``hgqir::ebops``: the header (:data:`.plan.EBOPS_HEADER`),
    the weight blocks (tensors per block, rounding), ``M`` and ``N`` in CSR and the max pairs
    (int64); the CSR values (float64, empty when all are 1, the common case: the kernel then
    skips the products)."""
    (mc, mk, mv, _), (nc, nk, nv, _) = index.mats
    sizes = {
        "rows": index.rows,
        "m_crow": mc.size,
        "m_col": mk.size,
        "n_crow": nc.size,
        "n_col": nk.size,
        "pairs": index.ma.size,
        "blocks": len(block_sizes),
    }
    head = [sizes[name] for name in EBOPS_HEADER] + list(block_sizes) + list(block_modes)
    ints = np.concatenate([np.asarray(head, dtype=np.int64), mc, mk, nc, nk, index.ma, index.mb]).astype(np.int64)
    values = np.concatenate([mv, nv]).astype(np.float64)
    if np.all(values == 1.0):
        values = values[:0]
    return torch.from_numpy(ints), torch.from_numpy(values)


def attach(qmod: QuantizedModule) -> KernelTraining | None:
    """The kernel accelerator of ``qmod``, or None when the kernels cannot run its bank (learned
    integer bits, folded batchnorm or grouped weights: the Python path trains those)."""
    return KernelTraining(qmod) if qmod.bank.simple_layout else None
