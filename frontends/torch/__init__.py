"""PyTorch frontend: import modules into hgqir graphs and build trainable quantized shims.

>>> import torch, hgqir
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> x = torch.randn(64, 4)
>>> qmod = hgqir.quantize_torch(net, x, beta=1e-5)          # train it like net
>>> g = hgqir.from_torch(qmod, x, calibration=x)            # calibrate, then import
>>> import numpy as np
>>> bool(np.array_equal(qmod.eval().double()(x.double()).detach().numpy(), g.run(x.numpy())))
True

Modules: :mod:`.torch_trace` and :mod:`.torch_ops` (fx tracing, what is supported),
:mod:`.torch_build` (the shim body), :mod:`.torch_shim` (:class:`QuantizedModule`),
:mod:`.torch_bank`, :mod:`.torch_modules`, :mod:`.torch_quant` (quantizers and HGQ
gradients), :mod:`.torch_ebops`, :mod:`.torch_calibrate`, :mod:`.torch_convert` (to the IR).
See docs/torch.md.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from .options import Granularity, QuantizerConfig, ShimConfig
from .shim import accel
from .shim.calibrate import calibrate, init_integer_bits
from .shim.module import QuantizedModule

try:  # the optional speed machinery (fused C++ training kernels); the shim works without it
    from .fast import attach as _attach_kernels
except ImportError:  # pragma: no cover (fast/ removed from the installation)
    _attach_kernels = None
if _attach_kernels is not None:
    accel.register(_attach_kernels)

__all__ = [
    "Granularity",
    "QuantizedModule",
    "QuantizerConfig",
    "ShimConfig",
    "calibrate",
    "from_torch",
    "load_for_cli",
    "quantize_torch",
]


def quantize_torch(module: Any, example_input: Any, beta: float = 0.0, **options: Any) -> QuantizedModule:
    """The trainable quantized twin of ``module`` (which is copied, never changed).

    ``example_input``: a batched tensor (or tuple of tensors) used to trace the model and to
    start the activation ranges. ``beta``: weight of EBOPs in ``regularization()``. Options
    are the fields of :class:`ShimConfig` (``weight=``, ``activation=``, ``input=``, ...).
    """
    import torch

    from .importer.trace import analyse
    from .shim.build import build_body

    if isinstance(module, QuantizedModule):
        raise TypeError("module is already a quantized shim")
    cfg = ShimConfig.from_options(options)
    source = copy.deepcopy(module)
    traced = analyse(source, example_input)
    body, plan = build_body(traced, cfg)
    qmod = QuantizedModule(body, plan, cfg, beta)
    dtype = next((p.dtype for p in source.parameters()), torch.float32)
    qmod.to(dtype)
    qmod.train(module.training)
    calibrate(qmod, example_input)
    init_integer_bits(qmod)
    return qmod


def from_torch(module: Any, example_input: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import a PyTorch module into an hgqir graph.

    A :class:`QuantizedModule` (from :func:`quantize_torch`) keeps its learned types; with
    ``calibration`` data it is calibrated in place first. A plain float module is imported
    through a fresh shim with the initial types of :class:`ShimConfig` (override them with the
    same options as :func:`quantize_torch`), calibrated on ``calibration`` (or on
    ``example_input``).
    """
    from .importer.convert import to_graph

    name = options.pop("name", None)
    if isinstance(getattr(module, "module", None), QuantizedModule):  # DistributedDataParallel, DataParallel
        module = module.module
    if isinstance(module, QuantizedModule):
        if options:
            raise TypeError(f"options {sorted(options)} only apply to plain modules; the shim keeps its own")
        qmod = module
    else:
        qmod = quantize_torch(module, example_input, **options)
        if calibration is None:
            calibration = example_input
    if calibration is not None:
        calibrate(qmod, calibration)
    return to_graph(qmod, name or type(module).__name__)


# ---------------------------------------------------------------------- command line
def _load_factory(spec: str) -> Any:
    """``package.module:factory`` or ``path/to/file.py:factory`` -> the factory's result."""
    target, _, attr = spec.rpartition(":")
    if not target:
        raise HgqirError(f"PyTorch model {spec!r}: expected MODULE:FACTORY, FILE.py:FACTORY or a saved .pt file")
    if target.endswith(".py") or os.path.sep in target:
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise HgqirError(f"PyTorch model file {target!r} does not exist")
        mod_name = os.path.splitext(os.path.basename(path))[0]
        loader = importlib.util.spec_from_file_location(mod_name, path)
        if loader is None or loader.loader is None:
            raise HgqirError(f"cannot import {target!r}")
        mod = importlib.util.module_from_spec(loader)
        sys.modules.setdefault(mod_name, mod)
        loader.loader.exec_module(mod)
    else:
        mod = importlib.import_module(target)
    try:
        factory = getattr(mod, attr)
    except AttributeError:
        raise HgqirError(f"{target} has no attribute {attr!r}") from None
    return factory() if callable(factory) and not _is_module(factory) else factory


def _is_module(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def load_for_cli(path: str, args: Any) -> Graph:
    """``hgqir import`` for PyTorch: ``MODULE:FACTORY``, ``FILE.py:FACTORY`` or a whole-module ``.pt``.

    The factory returns an ``nn.Module`` (a plain one or a shim), or ``(module, example_input)``.
    ``--input-shape C,H,W`` gives the example input's shape when the factory does not;
    ``--calibration data.npy`` calibrates (and, for plain modules, starts the types).
    """
    import torch

    if str(path).endswith((".pt", ".pth")) and os.path.exists(path):
        obj = torch.load(path, weights_only=False, map_location="cpu")
    else:
        obj = _load_factory(str(path))
    example = None
    if isinstance(obj, tuple) and len(obj) == 2:
        obj, example = obj
    if not isinstance(obj, torch.nn.Module):
        raise HgqirError(f"{path} gave a {type(obj).__name__}, not a torch.nn.Module")
    calibration = None
    if getattr(args, "calibration", None):
        calibration = torch.from_numpy(np.load(args.calibration)).float()
    if example is None:
        example = _example(args, calibration)
    return from_torch(obj.eval(), example, calibration=calibration)


def _example(args: Any, calibration: Any) -> Any:
    import torch

    shape = getattr(args, "input_shape", None)
    if shape:
        dims = tuple(int(s) for s in str(shape).replace("x", ",").split(",") if s.strip())
        if calibration is not None:
            return calibration[:256]
        return torch.randn(64, *dims, generator=torch.Generator().manual_seed(0))
    if calibration is not None:
        return calibration[:256]
    raise HgqirError("a PyTorch model needs --input-shape (e.g. 1,8,8) or --calibration data.npy")
