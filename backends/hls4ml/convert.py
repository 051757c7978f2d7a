"""IR graph → hls4ml ``ModelGraph`` through hls4ml's Python API (no Keras model in between).

1. Every op is checked; one :class:`~hgqir.UnsupportedOpError` lists all ops hls4ml cannot
   express exactly, before anything is built.
2. The lowering table turns ops into hls4ml layer dicts and a per-layer precision config.
3. ``ModelGraph.from_layer_list`` runs hls4ml's flows.
4. The converted model is checked: every requested precision must have survived hls4ml's
   optimizer passes, otherwise the model would silently stop being bit-exact.
5. Generated code g++ is slow on is replaced by equivalent compact code: per-element
   quantizers (:mod:`.quantizer_code`) and convolution im2col (:mod:`.im2col_code`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hgqir.errors import HgqirError, UnsupportedOpError
from hgqir.ir import Graph
from hgqir.ops.depthwise import expand as expand_depthwise
from hgqir.text import op_line

from . import lower_basic, lower_linear, lower_moves, lower_pool, lower_softmax, lower_table  # noqa: F401  (registration)
from .builder import LayerList, LayerRecord
from .im2col_code import compact_im2col
from .options import Hls4mlOptions
from .quantizer_code import group_quantizers
from .registry import LOWERINGS

REMOVABLE = {"Reshape"}
"""Layers hls4ml may delete without changing values (io_parallel reshapes move nothing)."""


def check_supported(g: Graph) -> None:
    """Raise one UnsupportedOpError naming every op hls4ml cannot express exactly, and why."""
    items = []
    for op in g.ops:
        rule = LOWERINGS.get(op.kind)
        reason = "no hls4ml lowering for this op kind" if rule is None else rule.check(op)
        if reason:
            items.append(f"{op_line(op, elide=True)}: {reason}")
    if items:
        raise UnsupportedOpError(f"graph {g.name!r}: {len(items)} op(s) cannot be emitted bit-exactly to hls4ml", items)


def build_layers(g: Graph) -> LayerList:
    """The hls4ml layer list and precisions of ``g`` (checked first; depthwise convolutions
    as the convolutions with their block-diagonal kernels)."""
    g = expand_depthwise(g)
    g.verify()
    check_supported(g)
    b = LayerList()
    for op in g.ops:
        LOWERINGS[op.kind].lower(b, op)
    return b


def hls_config(b: LayerList, out_dir: Path, options: Hls4mlOptions) -> dict[str, Any]:
    """The full hls4ml configuration dict of the project."""
    from hls4ml.backends import get_backend

    backend = get_backend(options.backend)
    config: dict[str, Any] = backend.create_initial_config(
        part=options.part, clock_period=options.clock_period, io_type=options.io_type
    )
    config.update(
        {
            "Backend": options.backend,
            "OutputDir": str(out_dir),
            "ProjectName": options.project_name,
            "HLSConfig": b.hls_config(options.reuse_factor, options.strategy),
        }
    )
    for name, rec in b.records.items():
        if rec.mult is not None and options.reuse_factor > 1:
            config["HLSConfig"]["LayerName"][name]["ReuseFactor"] = conv_reuse_factor(backend, rec.mult, options)
    return config


def conv_reuse_factor(backend: Any, mult: tuple[int, int], options: Hls4mlOptions) -> int:
    """The valid reuse factor closest to the requested one for a convolution.

    hls4ml's resource convolutions assert ``RF <= kernel size x channels`` (and its dense
    rules) in C++ at run time, which aborts the process; hls4ml does not always adjust it.
    """
    n_in, n_out = mult
    valid = [rf for rf in backend.get_valid_reuse_factors(n_in, n_out) if rf <= n_in]
    return int(backend.get_closest_reuse_factor(valid, options.reuse_factor))


def build_model(g: Graph, out_dir: Path, options: Hls4mlOptions) -> Any:
    """An hls4ml ``ModelGraph`` computing exactly what ``g.run`` computes."""
    from hls4ml.model.graph import ModelGraph

    b = build_layers(g)
    config = hls_config(b, out_dir, options)
    model = ModelGraph.from_layer_list(config, b.layers, inputs=b.inputs, outputs=b.outputs)
    check_precisions(model, b)
    group_quantizers(model)
    compact_im2col(model)
    return model


def _actual(layer: Any, var: str) -> Any:
    if var == "result":
        return layer.get_output_variable().type.precision
    attr = layer.get_attr(f"{var}_t")
    return None if attr is None else attr.precision


def _layer_problems(layer: Any, rec: LayerRecord) -> list[str]:
    problems = []
    for var, want in rec.precisions.items():
        got = _actual(layer, var)
        if var == "result" and rec.forced_result is not None:
            k, i, f = rec.forced_result
            ok = got is not None and (got.width, got.integer, got.signed) == (k + i + f, k + i, bool(k))
        else:
            ok = str(got) == str(want)
            weights = layer.weights.get(var) if var in ("weight", "bias", "scale", "table") else None
            ok = ok and (weights is None or str(weights.type.precision) == str(want))
        if not ok:
            problems.append(f"{layer.name}.{var}: requested {want}, hls4ml made it {got}")
    return problems


def check_precisions(model: Any, b: LayerList) -> None:
    """Fail loudly when hls4ml's passes dropped a layer or changed a requested precision."""
    problems = []
    for name, rec in b.records.items():
        layer = model.graph.get(name)
        if layer is None:
            if rec.class_name not in REMOVABLE:
                problems.append(f"{name} ({rec.class_name}) was removed by hls4ml")
            continue
        problems += _layer_problems(layer, rec)
    if problems:
        raise HgqirError(
            "hls4ml changed the converted model, which would no longer be bit-exact:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
