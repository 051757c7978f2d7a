"""The PyTorch frontend's house rules: its docstring examples run and the speed machinery (fast/)
is optional: without it training gives the same values. (Module sizes and import cycles are
checked tree-wide in tests/test_layers.py; no Keras and no fast/ imports by the import-linter
contracts in pyproject.toml.)"""

from __future__ import annotations

import copy
import doctest
import importlib

import pytest
import torch
from hgqir.frontends.torch import fast
from hgqir.frontends.torch.shim import accel
from torch import nn

import hgqir

PACKAGE = "hgqir.frontends.torch"
DOCTESTS = [PACKAGE, f"{PACKAGE}.options", f"{PACKAGE}.testing", f"{PACKAGE}.fast.plan", f"{PACKAGE}.shim.module"]


@pytest.mark.filterwarnings("ignore:.*Sparse CSR.*")
@pytest.mark.parametrize("name", DOCTESTS)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_training_without_fast_gives_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")
    torch.manual_seed(0)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)) * 2
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    shim = hgqir.quantize_torch(net, x, beta=1e-3)
    results = []
    for registered in (True, False):
        if not registered:
            monkeypatch.setattr(accel, "_FACTORIES", [])  # as if fast/ were not installed
        qmod = copy.deepcopy(shim).train()
        assert (qmod.accelerator is not None) is registered
        out = qmod(x)
        reg = qmod.regularization()
        (out.square().mean() + reg).backward()
        results.append((out.detach(), reg.detach(), qmod.bank.vmax.clone(), [p.grad for p in qmod.weight_parameters()]))
    (o1, r1, v1, g1), (o2, r2, v2, g2) = results
    assert torch.equal(o1, o2) and torch.equal(r1, r2) and torch.equal(v1, v2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    assert fast.attach in accel._FACTORIES or not accel._FACTORIES
