"""`hgqir demo` end to end: training, import, passes, Vitis emission, g++ C simulation, checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_demo_runs_and_is_bit_exact(framework: str, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "hgqir.cli", "demo", "--framework", framework, "--epochs", "2", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = re.search(r"bit-exact\s+(\d+)/(\d+) outputs equal", proc.stdout)
    assert m is not None, proc.stdout[-2000:]
    assert m.group(1) == m.group(2) and int(m.group(2)) > 0
    assert (out / "model.opt.hgq").is_file()
    assert (out / "vitis_prj" / "build_prj.tcl").is_file()
    assert re.search(r"test accuracy \(C simulation\)\s+0\.\d+", proc.stdout)
