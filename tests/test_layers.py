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
