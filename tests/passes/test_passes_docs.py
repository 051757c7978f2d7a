"""docs/passes.md covers every registered pass and option; the modules' examples run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
from hgqir.passes import PASSES

DOC = (Path(__file__).parents[2] / "docs" / "passes.md").read_text()
MODULES = ["bops", "infer_bitwidth", "intervals", "annotate_bops", "fuse_quant", "prune_zero_bits", "fold_batchnorm"]


@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_pass_and_option_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC
    for f in PASSES[name].options():
        assert f.name.replace("_", "-") in DOC, f"option {f.name} of {name} is not in docs/passes.md"


@pytest.mark.parametrize("module", MODULES)
def test_module_examples(module: str) -> None:
    mod = importlib.import_module(f"hgqir.passes.{module}")
    assert mod.__doc__ and len(mod.__doc__) > 80
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
