"""Check the layering contracts of ``[tool.importlinter]`` in pyproject.toml.

hgqir's top-level folders ``frontends/``, ``passes/`` and ``backends/`` are mapped into the
``hgqir`` namespace by setuptools' ``package-dir``. An editable install resolves them through an
import hook, so import-linter (which walks the package directory on disk) would only see the
core. This script lays the sources out as an installed wheel would, with symbolic links in a
temporary directory, and runs import-linter from there.

Usage: ``python tools/lint_imports.py`` (exit status 0 when every contract is kept).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"frontends": "frontends", "passes": "passes", "backends": "backends"}
"""Folder at the repository root -> subpackage of ``hgqir`` (as in pyproject's package-dir)."""


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror the ``.py`` files of ``src`` under ``dst`` as symbolic links (real directories)."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
        rel = Path(dirpath).relative_to(src)
        if not (Path(dirpath) / "__init__.py").exists():
            dirnames[:] = []
            continue
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if name.endswith(".py"):
                (dst / rel / name).symlink_to(Path(dirpath) / name)


def main(root: Path = ROOT) -> int:
    """Run the contracts over the sources under ``root`` (the repository by default)."""
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="hgqir-layers-") as tmp:
        pkg = Path(tmp) / "hgqir"
        _link_tree(root / "hgqir", pkg)
        for folder, sub in MAPPED.items():
            _link_tree(root / folder, pkg / sub)
        # import-linter puts the working directory first on sys.path: make that the mirror
        here = os.getcwd()
        os.chdir(tmp)
        sys.path.insert(0, tmp)
        try:
            return lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True, no_logo=True)
        finally:
            os.chdir(here)


if __name__ == "__main__":
    sys.exit(main())
