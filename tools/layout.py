"""The installed layout of the sources, for tools that read packages from disk.

hgqir's top-level folders ``frontends/``, ``passes/`` and ``backends/`` are mapped into the
``hgqir`` namespace by setuptools' ``package-dir``. An editable install resolves them through an
import hook, which import-linter and mypy (both walk the package directory on disk) do not see.
:func:`mirror` lays the sources out as a wheel would, with symbolic links, under ``dest``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("frontends", "passes", "backends")
"""Folders at the repository root that are subpackages of ``hgqir`` (as in pyproject's package-dir)."""


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror the ``.py`` files of the package ``src`` under ``dst`` as symbolic links."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
        if not (Path(dirpath) / "__init__.py").exists():
            dirnames[:] = []
            continue
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if name.endswith((".py", ".typed")):
                (dst / rel / name).symlink_to(Path(dirpath) / name)


def mirror(dest: Path, root: Path = ROOT) -> Path:
    """Lay out the ``hgqir`` package of ``root`` under ``dest`` (emptied first); returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    pkg = dest / "hgqir"
    _link_tree(root / "hgqir", pkg)
    for folder in MAPPED:
        _link_tree(root / folder, pkg / folder)
    return dest
