"""The one interface between the Keras shim and its optional speed machinery (:mod:`..fast`).

The shim is complete without it: every quantizer then keeps its fractional bits ``f`` in a
variable of its own. hgqir's :mod:`hgqir.frontends.keras.fast` registers a :class:`Banking`
here at import; it keeps the bits of each shim layer in one bank and pools the banks of a model
into one trainable variable (fewer optimizer ops per step), with the same values and gradients.
"""

from __future__ import annotations

from typing import Any, Protocol


class Bank(Protocol):
    """The fractional bits of one shim layer's quantizers (created in ``__init__``, attached in ``build``)."""

    def attach(self, quantizers: list[Any]) -> None:
        """Take over the ``f`` of ``quantizers`` (built, in the layer's order)."""

    def split(self, training: Any) -> list[Any]:
        """Each quantizer's rounded ``f`` for a training call; ``None`` each otherwise (then
        the quantizers read their own ``f``)."""


class Pool(Protocol):
    """The banks of one model in one variable."""

    variable: Any

    def unpack(self) -> None:
        """Before a training call: unpack the variable for every bank at once."""

    def release(self) -> None:
        """After the call: drop what :meth:`unpack` made."""


class Banking(Protocol):
    """What :mod:`..fast` provides."""

    def bank(self, name: str) -> Bank:
        """A bank for the shim layer ``name`` (a Keras layer tracked by its owner)."""

    def pool(self, model: Any) -> Pool | None:
        """Pool every bank of ``model``; None when it has none."""


class OwnVariables:
    """The bank without :mod:`..fast`: quantizers keep their own ``f`` variables."""

    def __init__(self, n: int) -> None:
        self.n = n

    def attach(self, quantizers: list[Any]) -> None:
        self.n = len(quantizers)

    def split(self, training: Any) -> list[Any]:
        return [None] * self.n


_BANKING: list[Banking] = []


def register(banking: Banking) -> None:
    """Install the speed machinery (called by :mod:`..fast` when it is importable)."""
    _BANKING[:] = [banking]


def make_bank(name: str, quantizers: list[Any]) -> Bank:
    """The bank of the shim layer ``name`` for its ``quantizers`` (before they are built)."""
    if not _BANKING:
        return OwnVariables(len(quantizers))
    for q in quantizers:
        q.banked = True
    return _BANKING[0].bank(name)


def pool(model: Any) -> Pool | None:
    """The pooled banks of a shim model, or None (no fast part, or no banks)."""
    return _BANKING[0].pool(model) if _BANKING else None
