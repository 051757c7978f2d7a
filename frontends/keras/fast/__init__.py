"""Speed machinery of the Keras shim, attached through :mod:`..shim.accel` only.

:mod:`.bank`: every shim layer keeps the fractional bits of its quantizers in one
:class:`~.bank.ParamBank`, and a model pools all banks into one trainable variable, so an
optimizer step updates one variable instead of one per quantizer (Keras' optimizers spend
about 30 small ops per variable and step). Values and gradients are the same as with the
quantizers' own variables.
"""

from __future__ import annotations

from typing import Any

from ..shim import accel
from ..shim.qmath import read
from .bank import ParamBank, pool_banks, split_bank


class _Pool:
    """The banks of one model in one variable (see :func:`.bank.pool_banks`)."""

    def __init__(self, model: Any, banks: list[ParamBank]) -> None:
        self.banks = banks
        self.variable = pool_banks(model, banks)

    def unpack(self) -> None:
        """One read and one op for every layer's bits of a training call."""
        shapes = [s for b in self.banks for s in b.shapes]
        parts = split_bank(read(self.variable), shapes, rounded=True)
        for b in self.banks:
            b.pending, parts = parts[: len(b.shapes)], parts[len(b.shapes) :]

    def release(self) -> None:
        for b in self.banks:
            b.pending = None


class Banking:
    """:class:`~..shim.accel.Banking` with parameter banks."""

    def bank(self, name: str) -> ParamBank:
        return ParamBank(name=f"{name}_fbank")

    def pool(self, model: Any) -> _Pool | None:
        banks = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, ParamBank)]
        return _Pool(model, banks) if banks else None


BANKING = Banking()
accel.register(BANKING)
