"""Reading an ONNX / QONNX model: the protobuf, its constants, attributes and input shapes.

Only ``onnx`` is needed (the ``hgqir[qonnx]`` extra); the qonnx package itself is used by the
tests as the reference executor, not by the importer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType

INSTALL_HINT = 'the QONNX frontend needs the onnx package: pip install "hgqir[qonnx]"'


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise HgqirError(INSTALL_HINT) from None
    return onnx


def load_model(model_or_path: Any) -> Any:
    """An ``onnx.ModelProto`` from a path, a ModelProto or a qonnx ``ModelWrapper``."""
    onnx = require_onnx()
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise HgqirError(f"no such ONNX file: {path}")
        return onnx.load(str(path))
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    inner = getattr(model_or_path, "model", None)  # qonnx.core.modelwrapper.ModelWrapper
    if isinstance(inner, onnx.ModelProto):
        return inner
    raise HgqirError(
        f"from_qonnx takes a path, an onnx.ModelProto or a qonnx ModelWrapper, not {type(model_or_path).__name__}"
    )


@dataclass
class Const:
    """A constant tensor in ONNX layout (no batch axis): float64 values and, once quantized, its type."""

    values: np.ndarray
    type: FixedType | None = None
    """Set by a Quant node; None for plain float constants (given their exact type when used)."""


def initializers(graph: Any) -> dict[str, Const]:
    from onnx import numpy_helper

    out = {}
    for init in graph.initializer:
        out[init.name] = Const(np.asarray(numpy_helper.to_array(init)))
    return out


def attrs_of(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def constant_node_value(node: Any) -> np.ndarray:
    from onnx import numpy_helper

    a = attrs_of(node)
    if "value" in a:
        return np.asarray(numpy_helper.to_array(a["value"]))
    for key in ("value_float", "value_int"):
        if key in a:
            return np.asarray(a[key])
    for key in ("value_floats", "value_ints"):
        if key in a:
            return np.asarray(list(a[key]))
    raise ValueError(f"Constant node attributes {sorted(a)} are not supported")


def input_shapes(graph: Any, skip: set[str]) -> dict[str, tuple[int | None, tuple[int, ...] | None]]:
    """Per graph input (not an initializer): its batch size (None: symbolic) and unbatched shape."""
    out: dict[str, tuple[int | None, tuple[int, ...] | None]] = {}
    for vi in graph.input:
        if vi.name in skip:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if not dims or any(d is None for d in dims[1:]):
            out[vi.name] = (None, None)
            continue
        out[vi.name] = (dims[0], tuple(int(d) for d in dims[1:]))  # type: ignore[arg-type]
    return out
