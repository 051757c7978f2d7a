"""The PyTorch frontend's house rules: its docstring examples run, its modules stay small, import
no module cycle and no Keras, and the speed machinery (fast/) is optional: the shim never imports
it, and without it training gives the same values."""

from __future__ import annotations

import ast
import copy
import doctest
import importlib
from pathlib import Path

import networkx as nx
import pytest
import torch
from hgqir.frontends.torch import fast
from hgqir.frontends.torch.shim import accel
from torch import nn

import hgqir

ROOT = Path(hgqir.frontends.torch.__file__).parent  # type: ignore[attr-defined]
PACKAGE = "hgqir.frontends.torch"
DOCTESTS = [PACKAGE, f"{PACKAGE}.options", f"{PACKAGE}.testing", f"{PACKAGE}.fast.plan", f"{PACKAGE}.shim.module"]


@pytest.mark.filterwarnings("ignore:.*Sparse CSR.*")
@pytest.mark.parametrize("name", DOCTESTS)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join([PACKAGE, *parts])] = path
    return out


def _top_level_imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """Modules imported at module level (not inside functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                names = {f"{base}.{a.name}" for a in node.names}
                found.update(names & modules if names & modules else {base})

    visit(tree.body)
    return found


def test_no_module_over_400_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 400} == {}


def test_no_module_level_import_cycles_and_no_keras() -> None:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        for target in _top_level_imports(name, path, set(modules)):
            assert "keras" not in target, f"{name} imports {target}"
            if target in modules and target != name:
                graph.add_edge(name, target)
    assert graph.number_of_edges() > 30  # the analysis sees the imports
    assert list(nx.simple_cycles(graph)) == []


def test_shim_and_importer_never_import_fast() -> None:
    for name, path in _modules().items():
        if name.startswith((f"{PACKAGE}.shim", f"{PACKAGE}.importer")):
            text = path.read_text()
            assert "fast" not in {
                a
                for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.ImportFrom)
                for a in (n.module or "").split(".")
            }, name


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
