"""The one interface between a shim and an optional training speed-up.

The shim is complete without one: its Python path trains, calibrates and exports. A speed-up
(hgqir ships :mod:`hgqir.frontends.torch.fast`, fused C++ kernels) registers a factory here;
the shim asks each registered factory, once, for an :class:`Accelerator` of itself (the
"prepare" step: it may decline by returning None), then calls it on every training forward and
for the regularizer. Both calls may answer None ("not this time": gradients off, a CUDA tensor,
kernels switched off), and the shim then takes its own path. An accelerator must give the same
values as the Python path (the tests pin them bit for bit) and must not be module state: it is
dropped when the shim is copied or pickled and prepared again on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from .module import QuantizedModule


class Accelerator(Protocol):
    """A faster way to run a shim's training steps (see the module docstring)."""

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> Any | None:
        """The training forward of ``inputs`` (the shim is in training mode), or None."""

    def regularization(self, scale: float, l1: float, fresh: bool) -> torch.Tensor | None:
        """``scale * EBOPs + l1 * sum(bits)`` with its gradient, or None. ``fresh=False`` allows
        handing out a value the last forward already computed, if it is still the same."""


AcceleratorFactory = Callable[["QuantizedModule"], "Accelerator | None"]

_FACTORIES: list[AcceleratorFactory] = []


def register(factory: AcceleratorFactory) -> None:
    """Offer ``factory`` to every shim (first registered, first asked); registering twice is a no-op."""
    if factory not in _FACTORIES:
        _FACTORIES.append(factory)


def unregister(factory: AcceleratorFactory) -> None:
    """Stop offering ``factory`` to shims prepared from now on."""
    if factory in _FACTORIES:
        _FACTORIES.remove(factory)


def prepare(qmod: QuantizedModule) -> Accelerator | None:
    """The first accelerator a registered factory makes for ``qmod`` (None: the Python path)."""
    for factory in _FACTORIES:
        accelerator = factory(qmod)
        if accelerator is not None:
            return accelerator
    return None
