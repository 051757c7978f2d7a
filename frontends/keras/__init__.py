"""Keras 3 frontend: import models into hgqir graphs, and build trainable quantized shims.

Three kinds of model come in:

* an **hgqir shim** (from :func:`quantize_keras`, trained or not): its learned per-element types
  are imported as they are; ``calibration=x`` first fixes the integer bits of its WRAP
  quantizers from data (:meth:`ShimModel.calibrate`);
* an **HGQ2** model (``hgq.layers``): imported with HGQ2's own quantizers
  (``calibration=x`` runs HGQ2's ``trace_minmax``);
* a **plain float** model: it has no fixed-point types, so it is imported straight to IR
  (:mod:`.importer.plain`, no shim is built) with quantizers where a shim would put them: one
  documented default type (``default_type``, ``weight_f``), or per-element types calibrated
  exactly on ``calibration=x``; a warning says which.

>>> g = hgqir.from_keras(qmodel, calibration=x_train)     # doctest: +SKIP
>>> np.array_equal(g.run(x), qmodel.predict(x))           # doctest: +SKIP
True
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from .graph import KNode, check_supported, walk
from .importer.convert import Converter, Emitter, QuantSpec
from .importer.shim_ir import SHIM_CONVERTERS, SHIM_LAYERS, quantized_reason, shim_input_quantizer
from .shim.build import quantize_keras
from .shim.model import BetaScheduler, ShimModel
from .shim.options import KerasConfig, keras_config
from .shim.quant import Quantizer, WeightQuantizer

try:  # the optional speed machinery (parameter banks); the shim works without it
    from . import fast as _fast  # noqa: F401  (registers itself in shim.accel)
except ImportError:  # pragma: no cover (fast/ removed from the installation)
    pass

__all__ = [
    "BetaScheduler",
    "Quantizer",
    "ShimModel",
    "KerasConfig",
    "WeightQuantizer",
    "from_keras",
    "keras_config",
    "load_for_cli",
    "quantize_keras",
]

IMPORT_OPTIONS = ("default_type", "weight_f", "batch_size")


def _hgq() -> Any:
    """The HGQ2 import module, or None when hgq2 is not installed."""
    try:
        from .importer import hgq as keras_hgq
    except ImportError:
        return None
    return keras_hgq


def _is_quantized(layer: Any) -> bool:
    hgq = _hgq()
    return isinstance(layer, SHIM_LAYERS) or (hgq is not None and hgq.is_hgq_layer(layer))


def _dialect() -> tuple[dict[type, Converter], Any, Any]:
    """Converters, support check and input-quantizer lookup for shim and HGQ2 layers together."""
    converters = dict(SHIM_CONVERTERS)
    hgq = _hgq()
    if hgq is None:
        return converters, quantized_reason, shim_input_quantizer
    converters.update(hgq.HGQ_CONVERTERS)

    def reason(node: KNode) -> str | None:
        return hgq.hgq_reason(node) if hgq.is_hgq_layer(node.layer) else quantized_reason(node)

    def input_quantizer(layer: Any, pos: int, shape: tuple[int, ...]) -> QuantSpec | None:
        return shim_input_quantizer(layer, pos, shape) or hgq.hgq_input_quantizer(layer, pos, shape)

    return converters, reason, input_quantizer


def _calibrate(model: Any, data: Any, batch_size: int) -> None:
    if isinstance(model, ShimModel):
        model.calibrate(data, batch_size=batch_size)
        return
    hgq = _hgq()
    if hgq is not None and any(hgq.is_hgq_layer(layer) for layer in model._flatten_layers()):
        hgq.calibrate(model, data, batch_size)
        return
    raise HgqirError(f"model {model.name!r} has no quantizers to calibrate")


def from_keras(model: Any, calibration: Any = None, **options: Any) -> Graph:
    """Import a Keras 3 model (hgqir shim, HGQ2 or plain float) into a verified :class:`Graph`.

    ``calibration``: inputs (batch first) that fix the integer bits of WRAP quantizers in place.
    Options: ``default_type=(k, i, f)`` and ``weight_f`` for plain float models,
    ``batch_size`` for calibration.
    """
    unknown = sorted(set(options) - set(IMPORT_OPTIONS))
    if unknown:
        raise TypeError(f"from_keras: unknown option(s) {unknown}; valid: {list(IMPORT_OPTIONS)}")
    kg = walk(model)
    converters, reason, input_quantizer = _dialect()
    if not any(_is_quantized(node.layer) for node in kg.nodes):
        from .importer.plain import import_plain
        from .support import float_reason

        check_supported(kg, float_reason)
        return import_plain(kg, options, calibration)
    check_supported(kg, reason)
    for key, name in zip(kg.inputs, kg.input_names, strict=True):  # fail before calibration changes the model
        Emitter(kg, converters, input_quantizer).input_spec(key, name)
    if calibration is not None:
        _calibrate(model, calibration, int(options.get("batch_size", 1024)))
    g = Emitter(kg, converters, input_quantizer).run()
    g.verify()
    return g


def load_keras(path: str, **options: Any) -> Any:
    """``keras.saving.load_model`` with hgqir's shim classes (and HGQ2's, when installed)
    registered: a saved shim loads in a fresh process after only ``import hgqir``.
    ``options`` go to ``load_model`` (e.g. ``compile=False``). A missing file raises
    ``FileNotFoundError``; a file Keras cannot read, :class:`~hgqir.errors.HgqirError` naming it."""
    import os

    import keras

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras model file {str(path)!r}")
    _hgq()  # registers HGQ2's serializable classes when hgq2 is installed; hgqir's are by now
    try:
        return keras.saving.load_model(path, **options)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise HgqirError(f"cannot load {str(path)!r} as a Keras model: {exc}") from exc


def load_for_cli(path: str, args: argparse.Namespace) -> Graph:
    """``hgqir import model.keras -o model.hgq``: load a saved model (shim, HGQ2 or float) and import it."""
    model = load_keras(path, compile=False)
    calibration = getattr(args, "calibration", None)
    data = np.load(calibration) if calibration else None
    return from_keras(model, calibration=data)
