"""``hgqir import`` for PyTorch models: factories, model files and saved modules."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.ir import Graph


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
    from . import from_torch

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
