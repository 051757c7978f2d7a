"""hgqir: a compiler IR for high-granularity quantized neural networks on FPGAs.

>>> import numpy as np, hgqir
>>> g = hgqir.Graph("tiny")
>>> x = g.input("x", hgqir.FixedType.uniform((3,), 1, 2, 2))
>>> _ = g.output(g.add(hgqir.OpKind.RELU, [x]).result)
>>> g.run(np.array([[-1.0, 0.5, 3.75]])).tolist()
[[0.0, 0.5, 3.75]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import HgqirError, ParseError, PipelineError, UnsupportedOpError, VerifyError
from .fixed import FixedType, OverflowMode, RoundMode, ap_type_name, summary
from .ir import Graph, Op, OpKind, Value
from .quantize import quantize
from .text import dumps, load, loads, save
from .verify import verify

if TYPE_CHECKING:
    from .frontends.shim_config import ShimConfig as ShimConfig
    from .passes import PassManager as PassManager

__version__ = "0.1.0"

__all__ = [
    "FixedType",
    "Graph",
    "HgqirError",
    "Op",
    "OpKind",
    "OverflowMode",
    "ParseError",
    "PassManager",
    "PipelineError",
    "RoundMode",
    "ShimConfig",
    "UnsupportedOpError",
    "Value",
    "VerifyError",
    "ap_type_name",
    "bops",
    "dumps",
    "emit",
    "from_hgq1",
    "from_keras",
    "from_qonnx",
    "from_torch",
    "load",
    "load_keras",
    "loads",
    "quantize",
    "quantize_keras",
    "quantize_torch",
    "save",
    "summary",
    "to_qonnx",
    "verify",
]


def __getattr__(name: str) -> Any:
    # heavy or optional parts load on first use so that `import hgqir` needs only numpy and networkx
    if name == "PassManager":
        from .passes import PassManager

        return PassManager
    if name == "ShimConfig":
        from .frontends.shim_config import ShimConfig

        return ShimConfig
    raise AttributeError(f"module 'hgqir' has no attribute {name!r}")


def bops(g: Graph, **options: Any) -> Any:
    """EBOPs per op and in total (``.total``) and the hardware estimate (``.lut``, ``.ff``, ``.dsp``);
    options ``dsp_bits``, ``hardware``, ``pipeline``: see :mod:`hgqir.passes.bops`."""
    from .passes.bops import bops as _bops

    return _bops(g, **options)


def from_keras(model: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import a Keras 3 model (plain, hgqir shim or HGQ2) into a graph."""
    from .frontends.keras import from_keras as _impl

    return _impl(model, calibration=calibration, **options)


def from_hgq1(path: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import an HGQ v1 (Keras 2) ``.h5`` file: a proxy model exactly, a raw one with ``calibration``.

    Reads the file with h5py; TensorFlow 2.15 and HGQ v1 are never imported.
    """
    from .frontends.hgq1 import from_hgq1 as _impl

    return _impl(path, calibration=calibration, **options)


def quantize_keras(model: Any, beta: Any = None, **options: Any) -> Any:
    """The trainable quantized twin (shim) of a Keras model; ``beta`` overrides ``config.beta``."""
    from .frontends.keras import quantize_keras as _impl

    return _impl(model, beta=beta, **options)


def load_keras(path: str, **options: Any) -> Any:
    """Load a saved Keras model (hgqir shim, HGQ2 or plain) with hgqir's classes registered."""
    from .frontends.keras import load_keras as _impl

    return _impl(path, **options)


def from_torch(module: Any, example_input: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import a PyTorch module (plain or hgqir shim) into a graph through torch.fx."""
    from .frontends.torch import from_torch as _impl

    return _impl(module, example_input, calibration=calibration, **options)


def quantize_torch(module: Any, example_input: Any, beta: Any = None, **options: Any) -> Any:
    """The trainable quantized twin (shim) of a PyTorch module (``beta``: overrides ``config.beta``)."""
    from .frontends.torch import quantize_torch as _impl

    return _impl(module, example_input, beta=beta, **options)


def from_qonnx(model_or_path: Any) -> Graph:
    """Import a QONNX model (e.g. a Brevitas export with fixed-point quantizers): a path, an
    ``onnx.ModelProto`` or a qonnx ``ModelWrapper``. Needs ``pip install "hgqir[qonnx]"``."""
    from .frontends.qonnx import from_qonnx as _impl

    return _impl(model_or_path)


def to_qonnx(g: Graph, path: Any = None, **options: Any) -> Any:
    """Export a graph with per-tensor / per-channel types to QONNX; returns the ``onnx.ModelProto``
    (also saved to ``path`` when given; ``batch_size=1`` by default)."""
    from .frontends.qonnx import to_qonnx as _impl

    return _impl(g, path, **options)


def emit(g: Graph, backend: str, out_dir: Any, /, **options: Any) -> Any:
    """Write a project for ``backend`` ('vitis' or 'hls4ml'); returns a Project.

    The first three parameters are positional-only so that backend options may reuse their
    names (the hls4ml backend takes ``backend="Vitis"``).
    """
    from .backends import emit as _emit

    return _emit(g, backend, out_dir, **options)
