"""The layering contracts (pyproject ``[tool.importlinter]``) hold, and the checker can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


def lint(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The checker in a fresh process (this one has imported hgqir from the editable install)."""
    cmd = [sys.executable, str(ROOT / "tools" / "lint_imports.py"), str(root)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


APP = {"__init__", "cli", "commands"}
"""Modules of hgqir/ outside the core: the facade and the command line."""


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_core_contract_names_every_core_module() -> None:
    names = {p.stem for p in (ROOT / "hgqir").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    listed = {m.removeprefix("hgqir.") for m in _contracts()["core"]["source_modules"]}
    assert names - APP == listed


def test_contracts_kept() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_core_import_of_a_pass_breaks_the_contract(tmp_path: Path) -> None:
    for folder in ("hgqir", "frontends", "passes", "backends"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    fixed = tmp_path / "hgqir" / "fixed.py"
    fixed.write_text(fixed.read_text() + "\nfrom .passes import dce  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0 and "The core imports no frontend, pass or backend BROKEN" in done.stdout


def _module_level_imports(path: Path, module: str, is_pkg: bool) -> set[str]:
    """Modules imported when ``module`` is loaded: top-level statements, not under TYPE_CHECKING."""
    import ast

    tree = ast.parse(path.read_text())
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    return out


def test_no_module_level_import_cycles() -> None:
    import networkx as nx

    roots = {"hgqir": ROOT / "hgqir", "hgqir.frontends": ROOT / "frontends"}
    roots |= {"hgqir.passes": ROOT / "passes", "hgqir.backends": ROOT / "backends"}
    files: dict[str, tuple[Path, bool]] = {}
    for prefix, folder in roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            is_pkg = rel[-1] == "__init__"
            name = ".".join((prefix, *rel[:-1])) if is_pkg else ".".join((prefix, *rel))
            files[name] = (path, is_pkg)
    graph = nx.DiGraph()
    for name, (path, is_pkg) in files.items():
        for target in _module_level_imports(path, name, is_pkg):
            if target in files and target != name:
                graph.add_edge(name, target)
    cycles = sorted(sorted(c) for c in nx.simple_cycles(graph) if not _package_init_edge(c, files))
    assert not cycles, f"module-level import cycles: {cycles[:5]}"


def test_no_module_over_400_lines() -> None:
    folders = [ROOT / f for f in ("hgqir", "frontends", "passes", "backends")]
    long = {
        str(p.relative_to(ROOT)): n
        for f in folders
        for p in f.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def _package_init_edge(cycle: list[str], files: dict[str, tuple[Path, bool]]) -> bool:
    """A package's ``__init__`` importing its own submodule, which imports a sibling through the
    package, is how Python packages load (not a cycle between modules)."""
    return any(files[m][1] and all(o == m or o.startswith(m + ".") for o in cycle) for m in cycle)
