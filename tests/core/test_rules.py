"""Every op kind has a complete rule: the table is the one place that knows an op kind."""

from __future__ import annotations

import pytest

from hgqir.interp import Runner
from hgqir.ir import OpKind
from hgqir.ops import RULES, Cast, Trait

NO_TRANSFER = {OpKind.INPUT, OpKind.CONST, OpKind.QUANT, OpKind.OUTPUT}
"""Kinds whose interval is their own type or value (bitwidth inference handles them itself)."""


@pytest.mark.parametrize("kind", list(OpKind), ids=lambda k: k.value)
def test_every_kind_has_a_complete_rule(kind: OpKind) -> None:
    rule = RULES[kind]
    assert rule.kind is kind
    assert (rule.transfer is None) == (kind in NO_TRANSFER)
    assert rule.traits != Trait.NONE, "say what passes may assume (Trait)"
    assert isinstance(rule.cast, Cast)
    assert rule.kernel in {"input", "none", *Runner.KERNELS}
    assert rule.doc and callable(rule.shapes) and callable(rule.infer) and callable(rule.eval)


def test_traits_replace_the_kind_lists() -> None:
    def having(trait: Trait) -> set[str]:
        return {k.value for k, r in RULES.items() if trait in r.traits}

    assert having(Trait.CONTRACTS) == {"dense", "conv1d", "conv2d"}
    assert having(Trait.READS_TABLE) == {"lut", "softmax"}
    assert having(Trait.MULTIPLIES) == {"mul", "batchnorm", "prelu"}
    assert {"maximum", "minimum"} <= having(Trait.MERGES)
    assert {"relu", "quant", "lut", "batchnorm", "maxpool2d", "global_avgpool"} <= having(Trait.CHANNELWISE)
    assert "softmax" not in having(Trait.CHANNELWISE)  # its output mixes channels


def test_cast_needed_lives_in_the_core_and_the_old_import_still_works() -> None:
    from hgqir import interp, ops

    assert interp.cast_needed is ops.cast_needed
