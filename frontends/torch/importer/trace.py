"""torch.fx tracing of PyTorch modules and classification of every node into a :class:`Step`.

Tracing keeps going past trouble so that one :class:`~hgqir.UnsupportedOpError` can list every
offending place: a submodule whose forward cannot be traced (data-dependent control flow, ...)
becomes an opaque call and is recorded; custom ``torch.autograd.Function`` calls are recorded
(fx would otherwise trace through their forward and silently lose the custom gradient).
Classification then turns each tensor-valued node into a :class:`Step` or a reason why not.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import os
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from hgqir.errors import UnsupportedOpError

from .ops import classify

_TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Step:
    """One tensor op of the traced model in frontend-neutral form."""

    node: fx.Node
    kind: str
    """linear, conv, batchnorm, relu, sigmoid, tanh, table (``attrs["func"]``), softmax, maxpool, avgpool, global_avgpool,
    global_maxpool, reshape, permute, cat, add, sub, mul, identity, dropout, input, output."""
    inputs: list[Any]
    """Operands: fx nodes for tensors, Python numbers for scalar constants."""
    module: nn.Module | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Traced:
    """A traced module: the fx graph module, its steps in order and the unbatched shapes."""

    gm: fx.GraphModule
    steps: list[Step]
    shapes: dict[str, tuple[int, ...]]
    """Unbatched output shape of every tensor-valued node, by node name."""


def _user_frame(frames: Any) -> str:
    """``file:line`` of the innermost frame outside torch and hgqir's torch frontend."""
    for fr in reversed(list(frames)):
        path = os.path.abspath(fr.filename)
        if not path.startswith(_TORCH_DIR) and not path.startswith(_HERE):
            return f"{fr.filename}:{fr.lineno}"
    return ""


def source_of(node: fx.Node) -> str:
    """Source location ``file:line`` recorded for a node while tracing ('' if unknown)."""
    stack = node.meta.get("stack_trace") or ""
    where = ""
    for line in stack.splitlines():
        line = line.strip()
        if line.startswith("File "):
            path = line.split('"')[1] if '"' in line else ""
            if path and not os.path.abspath(path).startswith((_TORCH_DIR, _HERE)):
                lineno = line.split("line ")[1].split(",")[0] if "line " in line else "?"
                where = f"{path}:{lineno}"
    return where


def definition_of(root: nn.Module, path: str) -> str:
    """``file:line`` where the layer at ``path`` is assigned in the source of the nearest module
    above it whose class is the user's (``self.body = nn.Sequential(...)`` for ``body.1``);
    '' when no such class or assignment is found (a bare ``nn.Sequential`` model)."""
    parts = path.split(".") if path else []
    for depth in range(len(parts) - 1, -1, -1):
        try:
            owner = root.get_submodule(".".join(parts[:depth]))
        except AttributeError:
            return ""
        cls = type(owner)
        if cls.__module__.startswith("torch."):
            continue
        try:
            lines, start = inspect.getsourcelines(cls)
            file = inspect.getsourcefile(cls) or ""
        except (OSError, TypeError):
            return ""
        pattern = re.compile(rf"self\.{re.escape(parts[depth])}\s*(:[^=]*)?=[^=]")
        for n, line in enumerate(lines):
            if pattern.search(line):
                return f"{file}:{start + n}"
        return ""
    return ""


def module_path_of(node: fx.Node) -> str:
    """Dotted path of the module a node belongs to ('' for the root module)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    return str(list(stack.values())[-1][0])


class _Tracer(fx.Tracer):
    """fx tracer that keeps torch.nn layers whole and records (rather than stops at) failures."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True
        self.failures: list[str] = []
        self.opaque: set[str] = set()
        """Paths of submodules that could not be traced (already reported)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return type(m).__module__.startswith(("torch.nn", "torch.ao.nn"))

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        depth = len(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:  # record the untraceable module, trace on around it
            while len(self.module_stack) > depth:
                self.module_stack.popitem(last=True)
            where = _user_frame(traceback.extract_tb(e.__traceback__))
            self.failures.append(_item(path or "<root>", type(m).__name__, f"cannot be traced: {_short(e)}", where))
            self.opaque.add(path)
            return self.create_proxy("call_module", path, args, kwargs)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{type(e).__name__}: {text}"


def _item(path: str, what: str, reason: str, where: str) -> str:
    loc = f" at {where}" if where else ""
    return f"{path} ({what}): {reason}{loc}"


@contextlib.contextmanager
def _guard_autograd_functions(tracer: _Tracer) -> Iterator[None]:
    """While tracing, record every custom autograd Function applied to traced values."""
    original = torch.autograd.Function.apply.__func__  # type: ignore[attr-defined]

    def apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, fx.Proxy) for a in args):
            stack = list(tracer.module_stack.values())
            path = stack[-1][0] if stack else "<root>"
            where = _user_frame(traceback.extract_stack())
            tracer.failures.append(
                _item(path or "<root>", cls.__name__, "custom autograd Function (its backward cannot be kept)", where)
            )
        return original(cls, *args, **kwargs)

    torch.autograd.Function.apply = classmethod(apply)  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        torch.autograd.Function.apply = classmethod(original)  # type: ignore[assignment, method-assign]


def trace(module: nn.Module) -> tuple[fx.GraphModule, list[str], set[str]]:
    """fx-trace ``module``; returns the graph module, the recorded failures, the opaque paths."""
    tracer = _Tracer()
    if tracer.is_leaf_module(module, ""):  # fx always traces into the root: wrap a bare layer
        module = nn.Sequential(module)
    try:
        with _guard_autograd_functions(tracer):
            graph = tracer.trace(module)
    except Exception as e:
        where = _user_frame(traceback.extract_tb(e.__traceback__))
        item = _item("<root>", type(module).__name__, f"cannot be traced: {_short(e)}", where)
        raise UnsupportedOpError(_HEADLINE, tracer.failures + [item]) from e
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm, tracer.failures, tracer.opaque


_HEADLINE = (
    "the PyTorch model uses layers or ops that hgqir cannot import exactly; nothing was imported. Offending places:"
)


def _as_tuple(x: Any) -> tuple[torch.Tensor, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _batched_example(example: Any) -> tuple[torch.Tensor, ...]:
    """Example inputs with a batch of at least 2 (a batch of 1 hides which axis is the batch)."""
    xs = _as_tuple(example)
    out = []
    for x in xs:
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        if x.dim() < 2:
            raise TypeError("example_input must be a batched tensor or array (or a tuple of them), batch axis first")
        out.append(torch.cat([x, x]) if x.shape[0] == 1 else x)
    return tuple(out)


def _shapes(gm: fx.GraphModule) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            shapes[node.name] = tuple(int(s) for s in meta.shape)
    return shapes


def analyse(module: nn.Module, example: Any) -> Traced:
    """Trace, run shape propagation on ``example`` and classify every node.

    Raises one :class:`UnsupportedOpError` listing every untraceable module and unsupported op.
    """
    gm, failures, opaque = trace(module)
    xs = _batched_example(example)
    failures += _check_inputs(gm, xs)
    if not _propagate(gm, xs, failures):
        raise UnsupportedOpError(_HEADLINE, failures)
    batched = _shapes(gm)
    steps, problems = [], list(failures)
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in opaque:
            continue
        result = classify(gm, node, batched)
        if isinstance(result, str):
            where = (definition_of(module, str(node.target)) if node.op == "call_module" else "") or source_of(node)
            if not where and node.op == "call_module":
                where = "a torch.nn container built outside any class of yours (no source line recorded)"
            what = type(gm.get_submodule(str(node.target))).__name__ if node.op == "call_module" else _target_name(node)
            problems.append(_item(module_path_of(node) or "<root>", what, result, where))
        elif result is not None:
            steps.append(Step(node, *result))
    if problems:
        raise UnsupportedOpError(_HEADLINE, problems)
    shapes = {name: s[1:] for name, s in batched.items()}
    return Traced(gm, steps, shapes)


def _propagate(gm: fx.GraphModule, xs: tuple[torch.Tensor, ...], failures: list[str]) -> bool:
    """Run shape propagation in eval mode; on failure add an item and return False."""
    from torch.fx.passes.shape_prop import ShapeProp

    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*[x.to(_param_dtype(gm)) for x in xs])
        return True
    except Exception as e:
        failures.append(_item("<root>", "forward", f"running the example input failed: {_short(e)}", ""))
        return False
    finally:
        gm.train(was_training)


def _param_dtype(gm: nn.Module) -> torch.dtype:
    for p in gm.parameters():
        return p.dtype
    return torch.float32


def _check_inputs(gm: fx.GraphModule, xs: tuple[torch.Tensor, ...]) -> list[str]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(xs):
        return [
            _item("<root>", "forward", f"takes {len(placeholders)} inputs but {len(xs)} example inputs were given", "")
        ]
    return []


def _target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    if t in (operator.add, operator.sub, operator.mul):
        return f"operator.{t.__name__}"  # type: ignore[union-attr]
    mod = getattr(t, "__module__", None) or ""
    return f"{mod}.{getattr(t, '__name__', str(t))}".lstrip(".")
