"""Graph boundary and constants: input, const, quant, output."""

from __future__ import annotations

import numpy as np

from ..fixed import FixedType
from ..ir import Op, OpKind
from ..numbers import Exact, exact_from_mantissas, first_outside, mantissa_range
from ..quantize import quantize_exact
from .base import Attr, Cast, OpRule, Trait, expect, register, same_shape


def _own_type(op: Op) -> list[FixedType]:
    # input and const define their own type; keep it
    return [op.results[0].type] if op.results else []


def _input_eval(op: Op, args: list[Exact]) -> list[Exact]:
    return args  # the interpreter converts external data with the op's modes


def _const_shapes(op: Op) -> list[tuple[int, ...]]:
    return [tuple(np.shape(op.attrs["data"]))]


def _const_check(op: Op) -> None:
    data = op.attrs["data"]
    t = op.result.type
    expect(tuple(data.shape) == t.shape, op, f"data shape {list(data.shape)} != type shape {list(t.shape)}")
    idx = first_outside(data, t)
    if idx is not None:
        lo, hi = mantissa_range(t)
        k, i, f = (int(a[idx]) for a in (t.k, t.i, t.f))
        expect(
            False,
            op,
            f"constant element {list(idx)} has mantissa {data[idx]} outside k={k} i={i} f={f} "
            f"(allowed {lo[idx]}..{hi[idx]}); widen the type or requantize the constant",
        )


def _const_eval(op: Op, args: list[Exact]) -> list[Exact]:
    return [exact_from_mantissas(op.attrs["data"], op.result.type)]


def _quant_infer(op: Op) -> list[FixedType]:
    return [op.results[0].type] if op.results else [op.operands[0].type]


def _quant_eval(op: Op, args: list[Exact]) -> list[Exact]:
    t = op.result.type
    m, s = quantize_exact(args[0].m, args[0].scale, t.k, t.i, t.f, op.attrs["round"], op.attrs["overflow"])
    return [Exact(m, s)]


register(
    OpRule(
        OpKind.INPUT,
        (0, 0),
        1,
        {"round": Attr("round", "TRN"), "overflow": Attr("overflow", "WRAP")},
        shapes=lambda op: [op.results[0].shape],
        infer=_own_type,
        eval=_input_eval,
        cast=Cast.BY_EVAL,
        traits=Trait.BOUNDARY,
        kernel="input",
        doc="Graph input; external float data is converted into its type with `round`/`overflow`.",
    )
)
register(
    OpRule(
        OpKind.CONST,
        (0, 0),
        1,
        {"data": Attr("array", required=True)},
        shapes=_const_shapes,
        infer=_own_type,
        eval=_const_eval,
        check=_const_check,
        cast=Cast.BY_EVAL,
        traits=Trait.BOUNDARY,
        kernel="none",
        doc="Bit-true constant: integer mantissas `data`, value = data * 2**-f per element.",
    )
)
register(
    OpRule(
        OpKind.QUANT,
        (1, 1),
        1,
        {"round": Attr("round", "TRN"), "overflow": Attr("overflow", "WRAP")},
        shapes=same_shape,
        infer=_quant_infer,
        eval=_quant_eval,
        cast=Cast.BY_EVAL,
        traits=Trait.CHANNELWISE,
        kernel="unary",
        doc="Quantize to the result type (per element) with the given rounding and overflow modes.",
    )
)
register(
    OpRule(
        OpKind.OUTPUT,
        (1, 1),
        0,
        {"name": Attr("str", "out")},
        shapes=lambda op: [],
        infer=lambda op: [],
        eval=lambda op, args: [],
        traits=Trait.BOUNDARY,
        kernel="none",
        doc="Marks a graph output.",
    )
)
