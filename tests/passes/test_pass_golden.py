"""Golden ``.hgq`` tests: IR text in, pipeline run, IR text out, compared with a reviewed file.

Every ``golden/<pass>/<case>.hgq`` names its pipeline on a ``# RUN: <spec>`` line; the
expected result is ``<case>.expected.hgq`` (full text, or the elided form when its header
says ``(elided)``). Each case is also checked for bit-exactness with the interpreter.

After a deliberate change, regenerate with ``python tests/passes/test_pass_golden.py --update``
and review every diff by hand before keeping it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pass_helpers import check_exact, inputs, run

import hgqir

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p for p in GOLDEN.glob("*/*.hgq") if not p.name.endswith(".expected.hgq"))


def spec_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# RUN:"):
            return line.removeprefix("# RUN:").strip()
    raise AssertionError("golden input needs a '# RUN: <pipeline>' line")


def expected_path(case: Path) -> Path:
    return case.with_name(case.stem + ".expected.hgq")


def run_case(case: Path) -> tuple[hgqir.Graph, hgqir.Graph, str]:
    """(graph before, graph after, text after in the expected file's form)."""
    text = case.read_text()
    g = hgqir.loads(text, source=str(case))
    before = g.clone()
    hgqir.PassManager.parse(spec_of(text)).run(g)
    exp = expected_path(case)
    elide = exp.exists() and exp.read_text().splitlines()[0].endswith("(elided)")
    return before, g, hgqir.dumps(g, elide=elide)


def _io_matched(before: hgqir.Graph, after: hgqir.Graph, xs: list[np.ndarray]) -> None:
    """Compare runs where ``keep-io=false`` dropped input features or outputs."""
    kept = after.meta.get("io_kept", {})
    xs2 = [x[..., kept[v.name]] if v.name in kept else x for x, v in zip(xs, before.inputs, strict=True)]
    names = [op.attrs["name"] for op in after.ops_of(hgqir.OpKind.OUTPUT)]
    for name, a, b in zip(names, run(before, xs), run(after, xs2), strict=True):
        assert np.array_equal(a[..., kept[name]] if name in kept else a, b)


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden(case: Path) -> None:
    before, after, text = run_case(case)
    assert text == expected_path(case).read_text(), f"{case.name}: output differs from the golden file"
    xs = inputs(before, np.random.default_rng(0), 200)
    if "keep-io=false" in spec_of(case.read_text()):
        _io_matched(before, after, xs)
    else:
        check_exact(before, after, xs)


def test_every_pass_has_a_golden_case() -> None:
    covered = {p.parent.name.replace("_", "-") for p in CASES}
    assert {"infer-bitwidth", "prune-zero-bits", "fold-batchnorm", "fuse-quant", "dce", "annotate-bops"} <= covered


def test_full_text_round_trips() -> None:
    for case in CASES:
        exp = expected_path(case).read_text()
        if not exp.splitlines()[0].endswith("(elided)"):
            assert hgqir.dumps(hgqir.loads(exp)) == exp


if __name__ == "__main__":
    if "--update" not in sys.argv:
        sys.exit("usage: python tests/passes/test_pass_golden.py --update   (then review every diff)")
    for case in CASES:
        _, _, text = run_case(case)
        expected_path(case).write_text(text)
        print("wrote", expected_path(case))
