"""The layer support matrix: which framework layers and functions become which IR ops.

Each frontend lists its supported layers as :class:`Support` entries (``keras/matrix.py``,
``torch/matrix.py``), each with a small example model. ``docs/gen_reference.py`` writes the
matrix page (layer -> ops -> which backends emit all of them) from these lists and the
backends' lowering tables; ``tests/frontends/test_support_matrix.py`` imports every example
and checks that the listed ops are the ones the import produces, so the page cannot drift from
the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Support:
    """One supported layer or function."""

    name: str
    """How users write it (``Dense``, ``nn.Linear``, ``F.max_pool2d``)."""
    ops: tuple[str, ...]
    """The IR op kinds its import produces besides quantizers and constants (``()``: none,
    the identity at inference or pure layout)."""
    note: str = ""
    """Restrictions (what is refused, with a reason, when it does not hold)."""
    example: Callable[[], tuple[Any, tuple[int, ...]]] | None = None
    """A small model using it and the unbatched input shape, for the consistency test."""
    issue15: bool = False
    """Added by the "real models in" work (the matrix size before it is the count without these)."""
