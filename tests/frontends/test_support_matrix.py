"""The support matrix (``docs/reference/layers.md``) cannot drift from the code: every listed
layer's example imports (plain float import, and for Keras also through the shim) and produces
the listed IR ops; every op listed exists."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hgqir.frontends.keras.matrix import SUPPORT as KERAS  # noqa: E402
from hgqir.frontends.torch.matrix import SUPPORT as TORCH  # noqa: E402

import hgqir  # noqa: E402
from hgqir.ir import OpKind  # noqa: E402


def _kinds(g: hgqir.Graph) -> set[str]:
    return {op.kind.value for op in g.ops}


@pytest.fixture
def _float64() -> Iterator[None]:
    from keras_testlib import float64_scope

    yield from float64_scope()


@pytest.mark.parametrize("entry", TORCH, ids=[s.name for s in TORCH])
def test_torch_entry_imports_to_its_ops(entry) -> None:  # type: ignore[no-untyped-def]
    import torch

    module, shape = entry.example()
    x = torch.randn(16, *shape, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = hgqir.from_torch(module.double().eval(), x[:1], calibration=x)
    assert set(entry.ops) <= _kinds(g), (entry.ops, _kinds(g))


@pytest.mark.parametrize("entry", KERAS, ids=[s.name for s in KERAS])
def test_keras_entry_imports_to_its_ops(entry, _float64) -> None:  # type: ignore[no-untyped-def]
    model, shape = entry.example()
    x = np.random.default_rng(0).normal(size=(16, *shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = hgqir.from_keras(model, calibration=x)
        shim = hgqir.from_keras(hgqir.quantize_keras(model), calibration=x)
    assert set(entry.ops) <= _kinds(plain), (entry.ops, _kinds(plain))
    assert set(entry.ops) <= _kinds(shim), (entry.ops, _kinds(shim))


def test_listed_ops_exist_and_the_page_is_current() -> None:
    for entry in (*KERAS, *TORCH):
        for op in entry.ops:
            OpKind(op)
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    sys.path.insert(0, str(docs))
    try:
        import gen_reference
    finally:
        sys.path.remove(str(docs))
    page = (docs / "reference" / "layers.md").read_text()
    assert page == gen_reference.layers_page(), "run python docs/gen_reference.py"
