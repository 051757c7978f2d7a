"""The calls a fused training step makes: :class:`ChainCall` (one ``hgqir::chain``) and the
regularizer its last chain computes on the way (:class:`StepCost`).

Neither holds a tensor besides its static plan: weights, ``f`` and the ranges are read from
their modules' dictionaries on every call (:mod:`.access`), so tensors that ``.to()``,
``.double()`` or ``load_state_dict(assign=True)`` replace are seen.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .access import Slot, read, version
from .plan import ChainLayer, pack_plan

BankSlots = tuple[Slot, Slot, Slot]
"""Where the bank keeps ``f``, ``vmax`` and ``vmin``."""


class StepCost:
    """The regularizer of a fused training step, computed by its last chain.

    ``loss + qmod.regularization()`` would otherwise be a second kernel call, a second autograd
    node and a second gradient into ``f``: on an MLP the step's largest overhead after the
    layers. The last chain (all ranges updated by then) also returns ``beta * EBOPs + l1 *
    sum(bits)``; :meth:`take` hands it to ``regularization()`` once, and only while it is what
    computing it anew would give: the same ``f``, weights and ranges (same tensors, unchanged
    since), the same ``beta`` and ``bit_l1``, and no backward pass through the chain since (it
    frees the graph; the chain's backward bumps its plan's version). Otherwise
    ``regularization()`` computes it. A step whose cost was not taken stops the computation
    until ``regularization()`` is called again (loops without the regularizer pay nothing)."""

    def __init__(
        self,
        weights: Sequence[Slot],
        bank: BankSlots,
        index: tuple[Tensor, Tensor],
        scales: Callable[[], tuple[float, float]],
        plan: Tensor,
    ) -> None:
        self.slots = tuple(weights)
        self.bank = bank
        self.index, self.values = index
        self.scales = scales
        self.plan = plan
        self.wanted = True
        self.kept: tuple[Any, ...] | None = None

    def run(
        self, x: Tensor, weights: list[Tensor], f: Tensor, vmax: Tensor, vmin: Tensor, plan: Tensor, decay: float
    ) -> Tensor | None:
        """The chain's output, the cost kept; None if this step should not compute it."""
        if self.kept is not None:  # the last step's cost was not taken: the loop does not use it
            self.kept, self.wanted = None, False
        if not (self.wanted and f.requires_grad):
            return None
        ws = [d[k] for d, k in self.slots]
        scale, l1 = self.scales()
        y, cost = torch.ops.hgqir.chain_cost.default(
            x, weights, f, vmax, vmin, plan, ws, self.index, self.values, scale, l1, decay
        )
        if cost.numel():  # (empty: weights and f differ in dtype, no cost computed)
            self.kept = (cost, scale, l1, self._state(ws))
        return y  # type: ignore[no-any-return]

    def _state(self, ws: list[Tensor]) -> tuple[list[Tensor], list[int]]:
        """Everything the cost depends on: the tensors (compared by identity), their versions."""
        tensors = [read(s) for s in self.bank] + ws
        return tensors, [version(self.plan), *[version(t) for t in tensors]]

    def take(self, scale: float, l1: float) -> Tensor | None:
        """The step's cost if it is still what ``regularization()`` would compute now (once)."""
        kept, self.kept, self.wanted = self.kept, None, True
        if kept is None or kept[1] != scale or kept[2] != l1 or not torch.is_grad_enabled():
            return None
        tensors, versions = self._state([read(s) for s in self.slots])
        same = versions == kept[3][1] and all(map(operator.is_, tensors, kept[3][0]))
        return kept[0] if same else None  # type: ignore[no-any-return]


class ChainCall:
    """One fused chain of a rewritten forward: ``x -> y`` through ``hgqir::chain``.

    It reads its weights and the bank's ``f`` and ranges from their modules' own dictionaries on
    every call (two dictionary lookups each, not ``nn.Module.__getattr__``). The last chain of a
    step carries the :class:`StepCost`."""

    __module__ = __name__

    def __init__(
        self, layers: Sequence[ChainLayer], slots: Sequence[Slot], bank: BankSlots, index: int, decay: float = 1.0
    ) -> None:
        self.layers = tuple(layers)
        self.decay = float(decay)
        """Running-range decay of its quantizers (``2**-i_decay``)."""
        self.slots = tuple(slots)
        self.plan = pack_plan(layers)
        self.bank = bank
        self.cost: StepCost | None = None
        self.__name__ = f"chain{index}"  # the name of this callable in the generated code

    def __call__(self, x: Tensor) -> Tensor:
        (fd, fk), (hd, hk), (ld, lk) = self.bank  # (slots: a dictionary and a key each)
        f, vmax, vmin = fd[fk], hd[hk], ld[lk]
        weights = [d[k] for d, k in self.slots]
        decay = self.decay
        y = self.cost.run(x, weights, f, vmax, vmin, self.plan, decay) if self.cost is not None else None
        if y is None:
            y = torch.ops.hgqir.chain.default(x, weights, f, vmax, vmin, self.plan, decay)
        return y  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<hgqir chain of {len(self.layers)} layers>"
