"""Walking a Keras 3 model's functional graph.

:func:`walk` turns a Sequential or Functional model into a :class:`KGraph`: its nodes (one per
layer call) in topological order, each with the keys of its input and output tensors and
their unbatched shapes. Nested Sequential / Functional models are inlined. A subclassed model
has no graph to walk; it gets an error that says what is supported.

Both the shim builder and the IR importer walk models this way, so they see the same nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hgqir.errors import UnsupportedOpError

Shape = tuple[int, ...]

SUPPORTED_MODELS = (
    "hgqir imports Keras 3 Sequential models (with a known input shape) and Functional models "
    "built from keras.Input; a subclassed keras.Model with a custom call() has no layer graph "
    "to import. Rebuild it functionally: x = keras.Input(shape); y = layer(x); keras.Model(x, y)."
)


@dataclass
class KNode:
    """One layer call: the layer and the keys of its input and output tensors."""

    layer: Any
    inputs: list[int]
    outputs: list[int]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.layer.name)


@dataclass
class KGraph:
    """A model's graph: inputs, outputs and nodes in topological order."""

    name: str
    inputs: list[int]
    input_names: list[str]
    outputs: list[int]
    nodes: list[KNode]
    shapes: dict[int, Shape]
    """Unbatched shape of every tensor key."""

    def consumers(self, key: int) -> list[tuple[KNode, int]]:
        """Nodes that read tensor ``key``, with the operand position."""
        found = []
        for node in self.nodes:
            for pos, k in enumerate(node.inputs):
                if k == key:
                    found.append((node, pos))
        return found

    def producer(self, key: int) -> KNode | None:
        for node in self.nodes:
            if key in node.outputs:
                return node
        return None


def _functional_of(model: Any) -> Any:
    """The Functional graph behind ``model``; raises for subclassed models."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise UnsupportedOpError(
                f"Sequential model {model.name!r} has no input shape yet, so it has no graph; "
                "start it with keras.Input(shape) or call model.build((None, *shape)) first."
            )
        return fn
    if isinstance(model, Functional):
        return model
    if isinstance(model, keras.Model):
        raise UnsupportedOpError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model without a "
            f"functional graph. {SUPPORTED_MODELS}"
        )
    raise UnsupportedOpError(f"expected a keras.Model, got {type(model).__name__}. {SUPPORTED_MODELS}")


def _unbatched(shape: Any) -> Shape:
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise UnsupportedOpError(
            f"tensor shape {tuple(shape)} has an unknown dimension besides the batch; "
            "hgqir needs fixed shapes (give keras.Input a full shape)"
        )
    return tuple(int(d) for d in dims)


def _ordered_nodes(fn: Any) -> Iterable[Any]:
    for depth in sorted(fn._nodes_by_depth.keys(), reverse=True):
        yield from fn._nodes_by_depth[depth]


def _walk_into(fn: Any, alias: dict[int, int], nodes: list[KNode], shapes: dict[int, Shape]) -> None:
    """Append ``fn``'s nodes; ``alias`` maps inner tensor ids to outer keys (nested models)."""
    from keras.src.models.functional import Functional

    def key(t: Any) -> int:
        k = alias.get(id(t), id(t))
        shapes.setdefault(k, _unbatched(t.shape))
        return k

    for node in _ordered_nodes(fn):
        if node.is_input or node.operation is None:
            continue
        op = node.operation
        ins = [key(t) for t in node.input_tensors]
        if isinstance(op, Functional) or _is_sequential(op):
            inner = _functional_of(op)
            sub_alias = {id(t): k for t, k in zip(inner.inputs, ins, strict=True)}
            _walk_into(inner, sub_alias, nodes, shapes)
            for outer_t, inner_t in zip(node.output_tensors, inner.outputs, strict=True):
                alias[id(outer_t)] = sub_alias.get(id(inner_t), id(inner_t))
            continue
        outs = [key(t) for t in node.output_tensors]
        kwargs = dict(getattr(node.arguments, "kwargs", {}) or {})
        nodes.append(KNode(op, ins, outs, kwargs))


def _is_sequential(op: Any) -> bool:
    import keras

    return isinstance(op, keras.Sequential)


def walk(model: Any) -> KGraph:
    """The graph of a Sequential or Functional Keras 3 model (nested models inlined)."""
    fn = _functional_of(model)
    shapes: dict[int, Shape] = {}
    inputs = [id(t) for t in fn.inputs]
    for t in fn.inputs:
        shapes[id(t)] = _unbatched(t.shape)
    nodes: list[KNode] = []
    alias: dict[int, int] = {}
    _walk_into(fn, alias, nodes, shapes)
    outputs = [alias.get(id(t), id(t)) for t in fn.outputs]
    names = [_input_name(t, n) for n, t in enumerate(fn.inputs)]
    return KGraph(str(model.name), inputs, names, outputs, nodes, shapes)


def _input_name(t: Any, n: int) -> str:
    hist = getattr(t, "_keras_history", None)
    if hist is not None and getattr(hist[0], "name", None):
        return str(hist[0].name)
    return f"input_{n}"


def check_supported(kg: KGraph, reason_of: Callable[[KNode], str | None]) -> None:
    """Raise one :class:`UnsupportedOpError` listing every node ``reason_of`` rejects."""
    problems = []
    seen: set[int] = set()
    for node in kg.nodes:
        reason = reason_of(node)
        if reason is not None and id(node.layer) not in seen:
            seen.add(id(node.layer))
            problems.append(f"{node.name} ({type(node.layer).__name__}): {reason}")
    if problems:
        raise UnsupportedOpError(
            f"model {kg.name!r} has {len(problems)} unsupported layer(s); nothing was imported", problems
        )
