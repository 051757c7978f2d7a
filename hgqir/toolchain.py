"""Finding g++ and the ``ap_types`` headers for C simulation.

The headers are never copied into this repository: they come from the installed hls4ml
package (which ships the open-source ap_types) or from a path the user gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import HgqirError


class ToolchainError(HgqirError):
    """g++ or the ap_types headers are missing, or a compile failed."""


def find_cxx(cxx: str | None = None) -> str:
    """Path of the C++ compiler (default ``g++``)."""
    name = cxx or "g++"
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(
            f"C++ compiler {name!r} not found; install g++ (Debian/Ubuntu: apt-get install g++) "
            "or pass the compiler's path"
        )
    return path


def ap_types_include(path: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding ``ap_fixed.h``: ``path`` if given, else the one inside installed hls4ml."""
    if path is not None:
        p = Path(path)
        if not (p / "ap_fixed.h").is_file():
            raise ToolchainError(f"no ap_fixed.h in {p}; give the folder that holds the ap_types headers")
        return p
    try:
        import hls4ml
    except ImportError:
        raise ToolchainError(
            "the ap_types headers come from the hls4ml package: pip install hls4ml==1.3.0 "
            "(or pass the headers' folder explicitly)"
        ) from None
    root = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (root / "ap_fixed.h").is_file():
        raise ToolchainError(f"hls4ml at {root.parent} does not ship ap_types/ap_fixed.h; pass the folder")
    return root


def compile_cxx(
    sources: list[Path],
    output: Path,
    include: list[Path] | None = None,
    flags: list[str] | None = None,
    cxx: str | None = None,
    shared: bool = False,
) -> Path:
    """Compile C++ ``sources`` into an executable (or a shared library); errors show g++'s output."""
    cmd = [find_cxx(cxx), "-std=c++14", "-O2", *(flags or [])]
    if shared:
        cmd += ["-shared", "-fPIC"]
    for inc in include or []:
        cmd += ["-I", str(inc)]
    cmd += [str(s) for s in sources] + ["-o", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise ToolchainError(f"compilation failed ({' '.join(cmd)}):\n{tail}")
    return output
