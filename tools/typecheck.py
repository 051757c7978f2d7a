"""Type-check the core, the passes and the backends with mypy (settings: pyproject ``[tool.mypy]``).

mypy reads packages from disk, so it runs over the installed layout of the sources
(:func:`layout.mirror`, symbolic links under ``build/layout``). Frontends are imported lazily
and followed silently: their types are used where the checked code calls them, their own
bodies are not checked (Keras and PyTorch stubs would decide that, not our code).

Usage: ``python tools/typecheck.py`` (exit status 0 when there is no error).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout import ROOT, mirror  # noqa: E402

CHECKED = ("hgqir", "hgqir.passes", "hgqir.backends")
"""Packages checked (with every module under them, except the frontends)."""


def targets(src: Path) -> list[str]:
    """``-m`` / ``-p`` arguments: every core module, and the passes and backends packages."""
    args = ["-m", "hgqir"]
    for p in sorted((src / "hgqir").iterdir()):
        if p.name in ("frontends", "passes", "backends", "__init__.py", "__pycache__"):
            continue
        if p.suffix == ".py":
            args += ["-m", f"hgqir.{p.stem}"]
        elif (p / "__init__.py").exists():
            args += ["-p", f"hgqir.{p.name}"]
    return args + ["-p", "hgqir.passes", "-p", "hgqir.backends"]


def main() -> int:
    from mypy import api

    src = mirror(ROOT / "build" / "layout")
    here = os.getcwd()
    os.chdir(src)
    try:
        out, err, status = api.run(
            ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / "build" / "mypy"), *targets(src)]
        )
    finally:
        os.chdir(here)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


if __name__ == "__main__":
    sys.exit(main())
