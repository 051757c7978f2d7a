"""QONNX frontend: import QONNX graphs (as Brevitas exports them) and export graphs to QONNX.

>>> import hgqir
>>> g = hgqir.from_qonnx("model.onnx")             # doctest: +SKIP
>>> hgqir.to_qonnx(g, "again.onnx")                # doctest: +SKIP

A ``Quant`` node with a power-of-two scale and zero point 0 is exactly an ap_fixed cast
(:mod:`.quant`); everything else the importer meets is listed in one
:class:`~hgqir.UnsupportedOpError`. Parts: :mod:`.reader` (the protobuf), :mod:`.importer`
(walk, layouts, operands), :mod:`.nodes` (one handler per op type), :mod:`.patterns` (the
exporter's helper nodes read back), :mod:`.export` and :mod:`.export_ops` (:func:`to_qonnx`). Needs the ``onnx`` package (``pip install "hgqir[qonnx]"``). See
docs/coming_from.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hgqir.ir import Graph

from .reader import load_model

__all__ = ["from_qonnx", "load_for_cli", "to_qonnx"]


def from_qonnx(model_or_path: Any, name: str | None = None) -> Graph:
    """The hgqir graph of a QONNX model (a path, an ``onnx.ModelProto`` or a qonnx ``ModelWrapper``).

    ``g.run(x)`` takes and returns arrays in the ONNX model's own layout (channels first).
    """
    from .importer import Importer

    model = load_model(model_or_path)
    if name is None:
        name = Path(model_or_path).stem if isinstance(model_or_path, (str, Path)) else (model.graph.name or "qonnx")
    return Importer(model, name).run()


def to_qonnx(g: Graph, path: Any = None, batch_size: int | None = 1) -> Any:
    """A QONNX ``onnx.ModelProto`` computing ``g`` (saved to ``path`` when given).

    ``batch_size``: the batch axis of the inputs and outputs (QONNX tools such as FINN and
    qonnx's executor want a static one; None writes a symbolic ``batch``).

    Every quantization point (inputs, ``quant`` ops, constants, implicit casts) must have a
    per-tensor or per-channel type: QONNX's ``Quant`` carries one bitwidth per tensor.
    """
    from .export import export

    model = export(g, batch_size)
    if path is not None:
        import onnx

        onnx.save(model, str(path))
    return model


def load_for_cli(path: str, args: Any) -> Graph:
    """``hgqir import model.onnx``."""
    return from_qonnx(path)
