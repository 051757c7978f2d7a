"""The runnable examples in the core's docstrings stay runnable."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hgqir", "hgqir.fixed", "hgqir.quantize", "hgqir.ir", "hgqir.passes.base"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
