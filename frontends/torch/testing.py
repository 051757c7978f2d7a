"""Helpers to check a PyTorch shim against its imported graph (used by the tests and examples).

>>> import torch, hgqir
>>> from hgqir.frontends.torch.testing import check_bit_exact
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> x = torch.randn(32, 3)
>>> qmod = hgqir.quantize_torch(net, x)
>>> g = hgqir.from_torch(qmod, x, calibration=x)
>>> check_bit_exact(qmod, g, [x, 4 * x])

:func:`step_values` gives what a cross-framework test compares: the forward values, EBOPs,
regularizer and gradients of one training step of a shim, in float64, on the Python path.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from .options import ShimConfig


def _as_list(y: Any) -> list[np.ndarray]:
    if isinstance(y, (tuple, list)):
        return [np.asarray(a) for a in y]
    return [np.asarray(y)]


def shim_outputs(qmod: torch.nn.Module, x: Any) -> list[np.ndarray]:
    """Outputs of a float64 eval-mode copy of ``qmod`` (the module itself is left alone)."""
    twin = copy.deepcopy(qmod).eval().double()
    xs = x if isinstance(x, (tuple, list)) else (x,)
    with torch.no_grad():
        y = twin(*(torch.as_tensor(np.asarray(a)).double() for a in xs))
    ys = y if isinstance(y, (tuple, list)) else (y,)
    return [a.numpy() for a in ys]


def check_bit_exact(qmod: torch.nn.Module, g: Graph, inputs: list[Any]) -> None:
    """Raise unless the float64 shim and ``g.run`` agree exactly (``np.array_equal``) on every input."""
    for n, x in enumerate(inputs):
        xs = x if isinstance(x, (tuple, list)) else (x,)
        want = shim_outputs(qmod, x)
        got = _as_list(g.run(*(np.asarray(a, dtype=np.float64) for a in xs)))
        if len(want) != len(got):
            raise HgqirError(f"input set {n}: the shim has {len(want)} outputs, the graph {len(got)}")
        for o, (a, b) in enumerate(zip(want, got, strict=True)):
            if a.shape != b.shape or not np.array_equal(a, b):
                diff = np.abs(a - b).max() if a.shape == b.shape else f"shapes {a.shape} vs {b.shape}"
                raise HgqirError(f"input set {n}, output {o}: shim and graph differ (max |diff| {diff})")


def step_values(module: torch.nn.Module, x: torch.Tensor, config: ShimConfig | None = None) -> dict[str, Any]:
    """One training step of the shim of ``module`` (copied, never changed) in float64.

    The shim is built with ``config`` (default ``ShimConfig()``) on ``x``, which also sets the
    initial ranges; then one training forward of ``x`` runs on the Python path (the reference
    formula; the kernels give the same values). Returns ``out`` (the forward values), ``ebops``
    and ``regularization`` (floats, after that forward), and the gradients of
    ``out.sum() + regularization()``: ``grad_f`` (the flat fractional bits, in the bank's
    order; :meth:`QuantizedModule.bitwidths` names the quantizers) and ``grad_weights`` (by
    parameter name in ``module``).

    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> v = step_values(net, torch.randn(8, 3), ShimConfig(beta=1e-3))
    >>> sorted(v), v["out"].dtype
    (['ebops', 'grad_f', 'grad_weights', 'out', 'regularization'], torch.float64)
    """
    from . import quantize_torch

    net = copy.deepcopy(module).double()
    xd = x.detach().double()
    qmod = quantize_torch(net, xd, config=config or ShimConfig()).double().train()
    qmod.accelerate = False
    out = qmod(xd)
    reg = qmod.regularization()
    ebops = qmod.ebops().item()
    (out.sum() + reg).backward()
    bits = {id(p) for p in qmod.bit_parameters()}
    weights = {
        name.removeprefix("body."): p.grad.detach().clone()
        for name, p in qmod.named_parameters()
        if id(p) not in bits and p.grad is not None
    }
    grad_f = qmod.bank.f.grad
    return {
        "out": out.detach(),
        "ebops": ebops,
        "regularization": reg.item(),
        "grad_f": grad_f.detach().clone() if grad_f is not None else torch.zeros_like(qmod.bank.f),
        "grad_weights": weights,
    }


class Fn(torch.nn.Module):
    """A module applying ``fn`` (a function call as a model of its own, for tests and examples)."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def train_steps(qmod: torch.nn.Module, x: torch.Tensor, steps: int = 4, lr: float = 1e-2) -> None:
    """A few Adam steps on ``mean(qmod(x)**2)`` plus the shim's regularizer (moves weights and bits)."""
    opt = torch.optim.Adam(qmod.parameters(), lr=lr)
    qmod.train()
    for _ in range(steps):
        opt.zero_grad()
        (qmod(x).square().mean() + qmod.regularization()).backward()  # type: ignore[operator]
        opt.step()
