"""Every script in ``examples/`` runs with ``--quick`` and reports all outputs bit-exact."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = {
    "keras_digits.py": ("keras", "sklearn"),
    "torch_digits.py": ("torch", "sklearn"),
    "hgq2_import.py": ("hgq", "keras", "sklearn"),
    "pipeline_scripting.py": (),
}


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs_bit_exact(script: str, tmp_path: Path) -> None:
    missing = _missing(SCRIPTS[script])
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "-o", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log
    m = re.search(r"bit-exact: (\d+)/(\d+) outputs equal", proc.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 0, log
    assert any((tmp_path / "out").rglob("*.hgq")), "the optimized graph was not saved"


def _common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_common", EXAMPLES / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_a_single_differing_output_fails_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    common = _common()
    checks = common.Checks()
    assert checks.compare("same", np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert common.finish(checks, [("model", "tiny")]) == 0
    assert not checks.compare("one differs", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert not checks.compare("shapes differ", np.zeros(3), np.zeros(2))
    assert common.finish(checks, [("model", "tiny")]) == 1
    assert "bit-exact: 3/6 outputs equal over 3 checks" in capsys.readouterr().out
