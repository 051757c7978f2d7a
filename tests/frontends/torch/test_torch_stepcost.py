"""The regularizer a fused training step keeps (:class:`hgqir.frontends.torch.fast.step.StepCost`).

``regularization()`` may hand out the cost the step's last chain computed, but only when it is
what computing it afresh would give: same value, and a graph that can still be differentiated.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

import hgqir

pytestmark = pytest.mark.filterwarnings("ignore:.*Sparse CSR.*")

X_MLP = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)) * 3
X_CNN = torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3))


def _shim(make: Callable[[], nn.Module] = _mlp, x: torch.Tensor = X_MLP, **options: object) -> nn.Module:
    qmod = hgqir.quantize_torch(make(), x, beta=options.pop("beta", 1e-3), **options)
    with torch.no_grad():  # spread the bitwidths so that rounding, pruning and ranges all vary
        g = torch.Generator().manual_seed(3)
        qmod.bank.f.copy_(torch.randint(-2, 9, qmod.bank.f.shape, generator=g).to(qmod.bank.f.dtype) + 0.3)
    return qmod.train()


def _fresh(qmod: nn.Module) -> torch.Tensor:
    """The regularizer computed now, by its own kernel call."""
    return qmod.cost(qmod.beta, qmod.config.bit_l1)


def _kept(qmod: nn.Module) -> torch.Tensor | None:
    kept = qmod.accelerator.step_cost.kept
    return None if kept is None else kept[0]


@pytest.mark.parametrize("bit_l1", [0.0, 1e-2])
def test_regularization_is_the_kept_cost(bit_l1: float) -> None:
    qmod = _shim(bit_l1=bit_l1)
    qmod(X_MLP)
    kept = _kept(qmod)
    assert kept is not None
    reg = qmod.regularization()
    assert reg is kept
    assert qmod.accelerator.step_cost.kept is None  # handed out once
    assert torch.equal(reg, _fresh(qmod))


@pytest.mark.parametrize(("make", "x"), [(_mlp, X_MLP), (_cnn, X_CNN)])
@pytest.mark.parametrize("bit_l1", [0.0, 1e-2])
def test_kept_cost_gradients_equal_unfused_step(make: Callable[[], nn.Module], x: torch.Tensor, bit_l1: float) -> None:
    # Exact, f's gradient included: each element of f gets one contribution from the chain and
    # one from the cost (cast to f's dtype before the sum on both paths), and a + b == b + a
    fused = _shim(make, x, bit_l1=bit_l1)
    unfused = copy.deepcopy(fused)
    unfused.accelerator.fuse = False  # unfused kernels and a separate hgqir::ebops call
    results = []
    for qmod in (fused, unfused):
        out = qmod(x)
        reg = qmod.regularization()
        (out.square().mean() + reg).backward()
        results.append((out, reg, qmod.bank.f.grad, [p.grad for p in qmod.weight_parameters()]))
    assert unfused.accelerator.step_cost is None and fused.accelerator.ran and unfused.accelerator.ran
    (out1, reg1, gf1, gw1), (out2, reg2, gf2, gw2) = results
    assert torch.equal(out1, out2) and torch.equal(reg1, reg2) and torch.equal(gf1, gf2)
    assert all(torch.equal(a, b) for a, b in zip(gw1, gw2, strict=True))
    assert float(gf1.abs().sum()) > 0


def test_cnn_kept_cost_comes_from_the_last_of_several_chains() -> None:
    qmod = _shim(_cnn, X_CNN)
    assert len(qmod.accelerator.chains()) >= 2
    qmod(X_CNN)
    kept = _kept(qmod)
    assert kept is not None
    reg = qmod.regularization()
    assert reg is kept and torch.equal(reg, _fresh(qmod))


def _task_backward(qmod: nn.Module, out: torch.Tensor) -> None:
    out.square().mean().backward()  # frees the step's graph, the kept cost's included


def _f_changed(qmod: nn.Module, out: torch.Tensor) -> None:
    with torch.no_grad():
        qmod.bank.f.add_(1.0)


def _beta_changed(qmod: nn.Module, out: torch.Tensor) -> None:
    qmod.beta = 0.25


def _weight_changed(qmod: nn.Module, out: torch.Tensor) -> None:
    with torch.no_grad():
        qmod.weight_parameters()[0].mul_(8.0)


def _ranges_changed(qmod: nn.Module, out: torch.Tensor) -> None:
    with torch.no_grad():  # a training-mode forward without gradients: unfused, and updates the ranges
        qmod(X_MLP * 10)


@pytest.mark.parametrize("change", [_task_backward, _f_changed, _beta_changed, _weight_changed, _ranges_changed])
def test_changes_after_the_forward_give_a_fresh_cost(change: Callable[[nn.Module, torch.Tensor], None]) -> None:
    qmod = _shim()
    out = qmod(X_MLP)
    kept = _kept(qmod)
    assert kept is not None
    change(qmod, out)
    reg = qmod.regularization()
    assert reg is not kept
    assert torch.equal(reg, _fresh(qmod))
    if change is not _task_backward:
        assert not torch.equal(reg, kept)  # the change matters: a stale cost would be caught
    reg.backward()  # a graph of its own


def test_regularization_twice_after_one_forward() -> None:
    qmod = _shim()
    qmod(X_MLP)
    first = qmod.regularization()
    second = qmod.regularization()
    assert second is not first and torch.equal(second, first)
    second.backward()


def test_regularization_without_grad_is_a_constant() -> None:
    qmod = _shim()
    qmod(X_MLP)
    kept = _kept(qmod)
    with torch.no_grad():
        reg = qmod.regularization()
    assert reg is not kept and reg.grad_fn is None
    assert torch.equal(reg, kept.detach())
    assert qmod.accelerator.step_cost.kept is None


def test_unused_costs_stop_until_regularization_is_called() -> None:
    qmod = _shim()
    qmod(X_MLP)
    cost = qmod.accelerator.step_cost
    assert cost.kept is not None and cost.wanted
    qmod(X_MLP)  # the first step's cost was not taken: the loop does not use it
    assert cost.kept is None and not cost.wanted
    qmod(X_MLP)
    assert cost.kept is None and not cost.wanted
    reg = qmod.regularization()  # computed afresh, and asks for the cost again
    assert cost.wanted and torch.equal(reg, _fresh(qmod))
    qmod(X_MLP)
    kept = _kept(qmod)
    assert kept is not None and qmod.regularization() is kept


def test_copies_of_a_shim_with_a_kept_cost() -> None:
    qmod = _shim()
    out = qmod(X_MLP)
    buffer = io.BytesIO()
    torch.save(qmod, buffer)
    buffer.seek(0)
    copies = [copy.deepcopy(qmod), torch.load(buffer, weights_only=False)]
    assert _kept(qmod) is not None  # copying leaves the original's cost in place
    reg = qmod.regularization()
    for other in copies:
        assert other.accelerator is not qmod.accelerator  # prepared again (its kept cost too), not copied
        again = other.regularization()
        assert torch.equal(again, reg)
        again.backward()
        assert torch.equal(other(X_MLP), out)
        assert _kept(other) is not None and torch.equal(other.regularization(), reg)


def test_weights_in_another_dtype_than_f_keep_no_cost() -> None:
    qmod = _shim().double()
    qmod.bank.f.data = qmod.bank.f.data.float()  # the chain runs in x's dtype; the cost needs f's
    out = qmod(X_MLP.double())
    assert qmod.accelerator.ran and qmod.accelerator.fused_module() is not None
    assert qmod.accelerator.step_cost.kept is None
    reg = qmod.regularization()
    assert torch.equal(reg, _fresh(qmod)) and reg.grad_fn is not None
    (out.square().mean() + reg).backward()


def test_replaced_beta_buffer_is_seen() -> None:
    # load_state_dict(assign=True) puts a new tensor in place of beta's buffer: whatever caches
    # beta's value must see it, as the kept cost's scale check must
    qmod = _shim()
    for step in range(40):
        beta = 1e-3 * (step + 2)
        qmod(X_MLP)
        qmod.load_state_dict({"_beta": torch.tensor(beta)}, strict=False, assign=True)
        assert torch.equal(qmod.regularization(), qmod.cost(float(torch.tensor(beta)), 0.0)), step


def test_replaced_f_is_seen() -> None:
    # load_state_dict(assign=True) replaces f by a new parameter: the kept cost (its graph on the
    # old f) must not be handed out, even when both are at version 0 (a first step)
    qmod = hgqir.quantize_torch(_mlp(), X_MLP, beta=1e-3).train()
    qmod(X_MLP)
    new_f = qmod.bank.f.detach() + 1.0
    qmod.load_state_dict({"body.hgq.f": new_f}, strict=False, assign=True)
    reg = qmod.regularization()
    assert torch.equal(reg, _fresh(qmod))
    reg.backward()
    assert qmod.bank.f.grad is not None


@pytest.mark.parametrize("skip_f", ["inputs", "autograd_grad"])
def test_backward_that_skips_f_gives_a_fresh_cost(skip_f: str) -> None:
    qmod = _shim()
    x = X_MLP.clone().requires_grad_()
    loss = qmod(x).square().mean()
    if skip_f == "inputs":
        loss.backward(inputs=qmod.weight_parameters())
    else:
        torch.autograd.grad(loss, x)
    assert qmod.bank.f.grad is None
    qmod.regularization().backward()
