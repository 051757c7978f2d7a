"""PyTorch frontend: import modules into hgqir graphs and build trainable quantized shims.

>>> import torch, hgqir
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> x = torch.randn(64, 4)
>>> qmod = hgqir.quantize_torch(net, x, beta=1e-5)          # train it like net
>>> g = hgqir.from_torch(qmod, x, calibration=x)            # calibrate, then import
>>> import numpy as np
>>> bool(np.array_equal(qmod.eval().double()(x.double()).detach().numpy(), g.run(x.numpy())))
True

Parts: :mod:`.importer` (torch.fx tracing, what is supported, records to IR; plain float modules
straight to IR), :mod:`.shim` (the trainable twin: body builder, quantizer modules and HGQ
gradients, bank of bitwidths, EBOPs, calibration, export of the learned types), :mod:`.fast`
(optional fused C++ training kernels, attached through :mod:`.shim.accel`), :mod:`.options`
(the PyTorch side of :class:`hgqir.ShimConfig`), :mod:`.tables`, :mod:`.testing`, :mod:`.cli`.
See docs/torch.md.
"""

from __future__ import annotations

import copy
from typing import Any

from hgqir.ir import Graph

from .cli import load_for_cli
from .options import BetaSchedule, Granularity, LayerOverride, QuantizerConfig, ShimConfig, torch_config
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
    "BetaSchedule",
    "Granularity",
    "LayerOverride",
    "QuantizedModule",
    "QuantizerConfig",
    "ShimConfig",
    "calibrate",
    "from_torch",
    "load_for_cli",
    "quantize_torch",
]


def quantize_torch(module: Any, example_input: Any, beta: float | None = None, **options: Any) -> QuantizedModule:
    """The trainable quantized twin of ``module`` (which is copied, never changed).

    ``example_input``: a batched tensor (or tuple of tensors) used to trace the model and to
    start the activation ranges. ``config=ShimConfig(...)`` and/or its fields as keywords
    (``weight=``, ``activation=``, ``input=``, ``bit_l1=``, ...) set the quantizers; ``beta``
    (weight of EBOPs in ``regularization()``) overrides ``config.beta``. With a
    ``config.beta_schedule``, ``qmod.set_epoch(epoch)`` sets beta for each epoch.
    """
    import torch

    from .importer.trace import analyse
    from .shim.build import build_body

    if isinstance(module, QuantizedModule):
        raise TypeError("module is already a quantized shim")
    cfg = torch_config(options, beta)
    source = copy.deepcopy(module)
    traced = analyse(source, example_input)
    body, plan = build_body(traced, cfg)
    start = cfg.beta if beta is not None or cfg.beta_schedule is None else cfg.beta_at(0)
    qmod = QuantizedModule(body, plan, cfg, start)
    dtype = next((p.dtype for p in source.parameters()), torch.float32)
    qmod.to(dtype)
    qmod.train(module.training)
    calibrate(qmod, example_input, margin_bits=0)  # starting points for training: the tightest
    init_integer_bits(qmod)
    return qmod


def from_torch(module: Any, example_input: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import a PyTorch module into an hgqir graph.

    A :class:`QuantizedModule` (from :func:`quantize_torch`) keeps its learned types; with
    ``calibration`` data it is calibrated in place first. A plain float module is imported
    directly (no shim is built) with the initial types of :class:`ShimConfig` (override them
    with the same options as :func:`quantize_torch`), activations calibrated on ``calibration``
    (or on ``example_input``); see :mod:`.importer.plain`.
    """
    from .importer.convert import to_graph
    from .importer.plain import import_plain

    name = options.pop("name", None)
    if isinstance(getattr(module, "module", None), QuantizedModule):  # DistributedDataParallel, DataParallel
        module = module.module
    if not isinstance(module, QuantizedModule):
        data = example_input if calibration is None else calibration
        return import_plain(module, example_input, data, torch_config(options), name or type(module).__name__)
    if options:
        raise TypeError(f"options {sorted(options)} only apply to plain modules; the shim keeps its own")
    if calibration is not None:
        calibrate(module, calibration)
    return to_graph(module, name or type(module).__name__)
