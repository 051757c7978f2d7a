"""The shims' quantizer arithmetic: exact casts against hgqir.quantize, and the HGQ gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hgqir.frontends.torch.shim.quant import (
    ClipQuant,
    ExactRound,
    FreeQuant,
    RoundSTE,
    ceil_log2,
    group_ki,
    needed_ki,
    quantize_exact,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import hgqir
from hgqir.fixed import OverflowMode, RoundMode

LN2 = math.log(2.0)


def _t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)


def test_exp2_of_integers_is_exact() -> None:
    """Every scale the shims use is exp2 of an integer: it must be an exact power of two."""
    e = np.arange(-1000, 1000)
    for dtype in (torch.float64, torch.float32):
        lo = -140 if dtype is torch.float32 else -1000
        ee = e[(e >= lo) & (e < 120)] if dtype is torch.float32 else e
        got = torch.exp2(_t(ee, dtype).repeat(3)).double().numpy()
        assert np.array_equal(got, np.tile(np.ldexp(1.0, ee), 3))


def _tricky(rng: np.random.Generator) -> np.ndarray:
    halves = np.arange(-64, 64) / 8 + 1 / 16  # exact ties at f=3
    return np.concatenate(
        [
            rng.normal(0, 4, 4000),
            np.arange(-64, 64) / 8,
            halves,
            np.full(3, -(0.5 - 2.0**-54)),
            rng.normal(0, 1e-9, 50),
            rng.normal(0, 1e6, 50),
        ]
    )


@pytest.mark.parametrize("rmode", list(RoundMode))
@pytest.mark.parametrize("omode", list(OverflowMode))
def test_quantize_exact_matches_reference(rmode: RoundMode, omode: OverflowMode) -> None:
    rng = np.random.default_rng(hash((rmode.name, omode.name)) % 2**32)
    x = _tricky(rng)
    k = rng.integers(0, 2, x.shape)
    i = rng.integers(-3, 6, x.shape)
    f = rng.integers(-2, 9, x.shape)
    want = hgqir.quantize(x, k, i, f, round=rmode, overflow=omode)
    got = quantize_exact(_t(x), _t(k), _t(i), _t(f), rmode, omode).numpy()
    assert np.array_equal(want, got)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    k=st.integers(0, 1),
    i=st.integers(-4, 8),
    f=st.integers(-3, 10),
    rmode=st.sampled_from(list(RoundMode)),
    omode=st.sampled_from(list(OverflowMode)),
)
@example(x=8192.0, k=0, i=0, f=10, rmode=RoundMode.RND, omode=OverflowMode.WRAP)  # 2**23: floor + 0.5 inexact
def test_quantize_exact_float32_inputs(x: float, k: int, i: int, f: int, rmode: RoundMode, omode: OverflowMode) -> None:
    """float32 arithmetic is exact too for float32 data and widths that fit float32."""
    want = hgqir.quantize([x], k, i, f, round=rmode, overflow=omode)
    args = [torch.tensor([v], dtype=torch.float32) for v in (x, k, i, f)]
    got = quantize_exact(*args, rmode, omode).double().numpy()
    if k + i + f <= 24:
        assert np.array_equal(want, got)


@settings(max_examples=300, deadline=None)
@given(v=st.lists(st.integers(-2000, 2000), min_size=1, max_size=8), f=st.integers(-3, 8))
def test_needed_ki_is_the_smallest_covering_type(v: list[int], f: int) -> None:
    vals = np.ldexp(np.array(v, dtype=np.float64), -f)
    lo, hi = torch.tensor(vals.min()), torch.tensor(vals.max())
    k, i = (int(a) for a in needed_ki(lo, hi, torch.tensor(float(f))))
    if not np.any(vals):
        assert k + i + f == 0
        return
    assert np.array_equal(hgqir.quantize(vals, k, i, f, "TRN", "WRAP"), vals)  # holds every value
    assert k == int(vals.min() < 0)
    assert not np.array_equal(hgqir.quantize(vals, k, i - 1, f, "TRN", "WRAP"), vals)  # and is the smallest


def test_ceil_log2_exact_at_powers_of_two() -> None:
    top = torch.tensor([2.0**-20, 0.25, 0.375, 1.0, 1.5, 2.0, 3.0, 2.0**40 + 1], dtype=torch.float64)
    assert ceil_log2(top).tolist() == [-20, -2, -1, 0, 1, 1, 2, 41]


def test_group_ki_per_channel() -> None:
    w = torch.tensor([[0.5, -0.25], [0.0, 0.0], [1.5, 0.75]])
    k, i = group_ki(w, (3, 1), torch.full((3, 1), 2.0))
    assert k.flatten().tolist() == [1, 0, 0] and i.flatten().tolist() == [0, -2, 1]


def test_round_ste_passes_gradient() -> None:
    f = torch.tensor([1.4, 2.6], requires_grad=True)
    r = RoundSTE.apply(f)
    (r * torch.tensor([3.0, 5.0])).sum().backward()
    assert r.tolist() == [1.0, 3.0] and f.grad.tolist() == [3.0, 5.0]


def test_free_quant_gradients_and_ranges() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 5, requires_grad=True)
    f = torch.full((5,), 3.0, requires_grad=True)
    vmax, vmin = torch.full((5,), -math.inf), torch.full((5,), math.inf)
    q = FreeQuant.apply(x, f, RoundMode.RND, vmax, vmin, (0,))
    g = torch.randn(64, 5)
    q.backward(g)
    assert torch.equal(x.grad, g)  # straight through
    assert torch.allclose(f.grad, -LN2 * (g * (q - x)).sum(0))  # HGQ surrogate
    assert torch.equal(vmax, q.detach().amax(0)) and torch.equal(vmin, q.detach().amin(0))
    assert torch.equal(q * 8, torch.round(x.detach() * 8))  # training rounds ties to even (fast)


def test_clip_quant_gradients() -> None:
    x = torch.tensor([[-3.0, -0.3, 0.3, 3.0]], requires_grad=True)
    f = torch.tensor(2.0, requires_grad=True)
    i = torch.tensor(0.0, requires_grad=True)
    k = torch.tensor(1.0)
    q = ClipQuant.apply(x, f, i, k, RoundMode.RND, False)
    assert q.tolist() == [[-1.0, -0.25, 0.25, 0.75]]
    q.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]  # clipped elements pass no gradient to x
    # i: the top bound 2**i - 2**-f and the bottom bound -2**i each move by ln2 * 2**i
    assert i.grad.item() == pytest.approx(LN2 - LN2)
    inside = -LN2 * ((-0.25 + 0.3) + (0.25 - 0.3))
    assert f.grad.item() == pytest.approx(inside + LN2 * 0.25)


def test_exact_round_is_exact_and_differentiable() -> None:
    x = torch.tensor([0.125, -0.375, 0.3], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    q = ExactRound.apply(x, f, RoundMode.RND)
    assert q.tolist() == hgqir.quantize(x.detach().numpy(), 1, 4, f.detach().numpy(), "RND", "SAT").tolist()
    q.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
