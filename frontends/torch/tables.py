"""Tables for sigmoid, tanh, the smooth activations and softmax, shared by the shims and the importer.

Both sides call the same functions with the same types, so they read the same bit-true
entries: the shim's eval-mode output equals the IR's ``lut`` / ``softmax`` ops exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType
from hgqir.ops import make_table
from hgqir.ops.table import MAX_TABLE_BITS

from ..activations import SMOOTH_NUMPY, out_kif, threshold_numpy, threshold_params
from .smooth import torch_fn

KIF = tuple[int, int, int]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Parametric(dict):  # type: ignore[type-arg]
    """Function tables that also know the parametric ``threshold(t,v)`` names (built on first use)."""

    def __init__(self, torch_side: bool, *args: Any) -> None:
        super().__init__(*args)
        self.torch_side = torch_side

    def __missing__(self, name: str) -> Any:
        fn = threshold_numpy(name)
        if fn is None:
            raise KeyError(name)
        if self.torch_side:
            t, v = threshold_params(name)  # type: ignore[misc]
            fn = lambda x: torch.where(x > t, x, torch.full_like(x, v))  # noqa: E731
        self[name] = fn
        return fn


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = _Parametric(
    False, {"sigmoid": _sigmoid, "tanh": np.tanh, **SMOOTH_NUMPY}
)
"""float64 reference of every table function (numpy; the table entries come from these)."""

TORCH_FUNCTIONS: dict[str, Callable[[Any], Any]] = _Parametric(
    True, {"sigmoid": torch_fn("sigmoid"), "tanh": torch_fn("tanh")}
)
TORCH_FUNCTIONS.update({name: torch_fn(name) for name in SMOOTH_NUMPY})
"""The same functions on torch tensors (the shims' training-mode forward)."""


def lut_out_kif(func: str, f: int) -> KIF:
    """Output type of a table of ``func`` with ``f`` fractional bits, RND then SAT.

    sigmoid and hard_sigmoid saturate at 1 (``(0, 0, f)``), tanh at ±1 (``(1, 0, f)``); the
    unbounded functions (:data:`~hgqir.frontends.activations.SMOOTH_NUMPY`) get
    :data:`~hgqir.frontends.activations.UNBOUNDED_I` integer bits.
    """
    if func in ("sigmoid", "hard_sigmoid"):
        return (0, 0, f)
    if func == "tanh":
        return (1, 0, f)
    return out_kif(func, f)


def _check_width(what: str, kif: KIF, max_bits: int) -> None:
    bits = sum(kif)
    if bits > max_bits:
        limit = "the IR's limit" if max_bits >= MAX_TABLE_BITS else "table_bits"
        raise HgqirError(
            f"the {what} table would be indexed by a {bits}-bit input (k, i, f = {kif}); tables allow "
            f"{max_bits} bits ({limit}): give the quantizer before it fewer fractional bits or a smaller range"
        )


def lut_table(func: str, in_kif: KIF, f: int, max_bits: int = MAX_TABLE_BITS) -> tuple[np.ndarray, FixedType]:
    """Mantissas and type of ``func``'s table over every value of ``in_kif`` (RND, SAT), indexed
    by at most ``max_bits`` bits (else a clear error)."""
    _check_width(func, in_kif, max_bits)
    return make_table(FUNCTIONS[func], in_kif, lut_out_kif(func, f), round="RND", overflow="SAT")


@dataclass(frozen=True)
class SoftmaxTables:
    """The two tables and the sum type of a table softmax (see :mod:`hgqir.ops.table`)."""

    exp_data: np.ndarray
    exp_type: FixedType
    inv_data: np.ndarray
    inv_type: FixedType
    inv_in: KIF
    in_f: int
    """LSB exponent of the input: differences ``max(x) - x`` are counted in ``2**-in_f``."""


def softmax_tables(
    in_kif: KIF, n: int, exp_f: int, inv_f: int, sum_f: int, max_bits: int = MAX_TABLE_BITS, log: bool = False
) -> SoftmaxTables:
    """Tables for a softmax over ``n`` elements whose input has the union type ``in_kif``.

    ``exp[d] = exp(-d * 2**-f)`` for every difference ``d`` (in LSBs) until the entries
    underflow; the exp sum lies in ``[1, n]`` and is truncated to ``sum_f`` fractional bits
    before the reciprocal table. With ``log`` (log_softmax) the second table holds ``log(s)``
    with ``inv_f`` fractional bits instead (unsigned: the sum is at least ``exp(0) = 1``).
    """
    k, i, f = in_kif
    width = max(k + i + f, 0)
    underflow = math.ceil((exp_f + 2) * math.log(2.0) * 2.0**f) + 1
    bits = max(1, min(width, math.ceil(math.log2(underflow + 1))))
    _check_width("softmax exp", (0, bits, 0), max_bits)
    exp_data, exp_type = make_table(
        lambda d: np.exp(-d * 2.0**-f), (0, bits, 0), (0, 1, exp_f), round="RND", overflow="SAT"
    )
    sum_i = max(1, math.ceil(math.log2(n + 2.0**-sum_f)))
    inv_in = (0, sum_i, sum_f)
    _check_width("softmax reciprocal", inv_in, max_bits)
    floor = 2.0**-sum_f
    if log:
        log_i = max(1, math.ceil(math.log2(math.log(n + 1.0) + 1.0)))
        inv_data, inv_type = make_table(
            lambda s: np.log(np.maximum(s, 1.0)), inv_in, (0, log_i, inv_f), round="RND", overflow="SAT"
        )
        return SoftmaxTables(exp_data, exp_type, inv_data, inv_type, inv_in, f)
    inv_data, inv_type = make_table(
        lambda s: 1.0 / np.maximum(s, floor), inv_in, (0, 1, inv_f), round="RND", overflow="SAT"
    )
    return SoftmaxTables(exp_data, exp_type, inv_data, inv_type, inv_in, f)


def union_kif(k: np.ndarray, i: np.ndarray, f: np.ndarray) -> KIF:
    """Union ``(max k, max i, max f)`` over live elements (as ``FixedType.union``)."""
    live = (k + i + f) > 0
    if not live.any():
        return (0, 0, 0)
    return (int(k[live].max()), int(i[live].max()), int(f[live].max()))
