"""Check the layering contracts of ``[tool.importlinter]`` in pyproject.toml.

import-linter walks the package directory on disk, so it runs over the installed layout of the
sources (:func:`layout.mirror`, symbolic links in a temporary directory).

Usage: ``python tools/lint_imports.py [ROOT]`` (exit status 0 when every contract is kept; ROOT:
another checkout, default this one). Run it in a fresh process: a process that has already
imported ``hgqir`` from the editable install would make import-linter see that copy.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout import ROOT, mirror  # noqa: E402


def main(root: Path = ROOT) -> int:
    """Run the contracts over the sources under ``root`` (the repository by default)."""
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="hgqir-layers-") as tmp:
        mirror(Path(tmp) / "src", root)
        # import-linter puts the working directory first on sys.path: make that the mirror
        here = os.getcwd()
        os.chdir(Path(tmp) / "src")
        sys.path.insert(0, str(Path(tmp) / "src"))
        try:
            return lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True, no_logo=True)
        finally:
            sys.path.remove(str(Path(tmp) / "src"))
            os.chdir(here)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT))
