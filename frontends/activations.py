"""Smooth activations as exact tables: the float64 reference of each, shared by both frontends.

Each function becomes the IR's ``lut`` op over its quantized input, so the IR is exact by
construction; the numpy references below compute the table entries (RND, SAT). The frameworks'
own functions serve only as the training-mode forward (their gradient). Parameterised variants
are supported at the defaults (``ELU(alpha=1)``, ``Softplus(beta=1, threshold=20)``); the
importers refuse others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

UNBOUNDED_I = 7
"""Integer bits of the output of an unbounded table function: outputs saturate at ``2**7``."""

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.frompyfunc(math.erf, 1, 1)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _selu(x: np.ndarray) -> np.ndarray:
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _silu(x: np.ndarray) -> np.ndarray:
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(_softplus(x))


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def _hard_tanh(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1.0, 1.0)


SMOOTH_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "silu": _silu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "mish": _mish,
    "hard_swish": _hard_swish,
    "hard_sigmoid": _hard_sigmoid,
    "relu6": _relu6,
    "hard_tanh": _hard_tanh,
}
"""Table function name -> float64 reference (PyTorch's definitions; ``hard_sigmoid`` is
``relu6(x + 3) / 6``). ``relu6`` and ``hard_tanh`` are piecewise linear; as tables they are
exact too (a dedicated shift-and-clip op would be cheaper in hardware)."""

UNSIGNED = frozenset({"softplus", "hard_sigmoid", "relu6"})
"""Functions whose outputs are never negative (their tables are unsigned)."""


def out_kif(func: str, f: int) -> tuple[int, int, int]:
    """Output type of an unbounded table function with ``f`` fractional bits (RND, SAT)."""
    return (int(func not in UNSIGNED), UNBOUNDED_I, f)


_THRESHOLD = re.compile(r"^threshold\(([^,]+),([^)]+)\)$")


def threshold_name(threshold: float, value: float) -> str:
    """The table function name of ``x if x > threshold else value`` (PyTorch's ``nn.Threshold``)."""
    return f"threshold({float(threshold)!r},{float(value)!r})"


def threshold_params(name: str) -> tuple[float, float] | None:
    """``(threshold, value)`` of a :func:`threshold_name`, None for other names."""
    m = _THRESHOLD.match(name)
    return (float(m.group(1)), float(m.group(2))) if m else None


def threshold_numpy(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    params = threshold_params(name)
    if params is None:
        return None
    t, v = params
    return lambda x: np.where(x > t, x, v)
