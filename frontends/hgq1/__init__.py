"""HGQ v1 frontend: import models saved by HGQ v1 (PyPI ``hgq`` 0.2.x, Keras 2 ``.h5``).

HGQ v1 needs TensorFlow <= 2.15 and Keras 2; hgqir reads its files with h5py alone and never
imports TensorFlow or HGQ. Two kinds of file come in:

* a **proxy** model (``HGQ.proxy.to_proxy_model(model).save(path)``): plain Keras 2 layers and
  ``FixedPointQuantizer`` layers with every type in the file; imported exactly
  (:mod:`.proxy`), no calibration needed;
* a **raw** HGQ v1 model (``model.save(path)``: ``HQuantize``, ``HDense``, ``HConv2D`` ...): the
  learned fractional bits are in the file, but the traced activation ranges are not, so the
  integer bits come from ``calibration`` data exactly as HGQ v1's ``trace_minmax`` finds them
  (:mod:`.raw`); the result is the graph ``to_proxy_model`` would have made.

>>> g = hgqir.from_hgq1("model_proxy.h5")                         # doctest: +SKIP
>>> g = hgqir.from_hgq1("model.h5", calibration=x_train)           # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from .emit import Builder
from .h5model import model_config, read_model
from .proxy import PROXY
from .raw import RAW

__all__ = ["from_hgq1", "is_hgq1_file", "load_for_cli"]


def _classes(path: str | Path) -> set[str]:
    cfg = model_config(path)
    return {str(spec.get("class_name", "")) for spec in cfg.get("config", {}).get("layers", [])}


def is_hgq1_file(path: str | Path) -> bool:
    """True when ``path`` is a Keras 2 HDF5 file with HGQ v1 layers (raw or proxy)."""
    try:
        return any(c.startswith("HGQ>") for c in _classes(path))
    except (HgqirError, OSError, ValueError):
        return False


def from_hgq1(path: str | Path, calibration: Any = None, *, aggressive: bool = True) -> Graph:
    """Import an HGQ v1 ``.h5`` file: a proxy model exactly, a raw model with ``calibration`` data.

    ``calibration``: the inputs (an array, or a list of arrays for several model inputs, batch
    first) to take the activations' integer bits from, as ``trace_minmax`` does; needed for raw
    files, ignored for proxy files.
    """
    model = read_model(path)
    if any(layer.cls == "FixedPointQuantizer" for layer in model.layers):
        return Builder(model, PROXY).run()
    if calibration is None:
        raise HgqirError(
            f"{path} is a raw HGQ v1 model: its activation ranges were traced by trace_minmax but are "
            "not saved in the file. Pass calibration=x (the data trace_minmax saw), or import the proxy "
            "model instead (HGQ.proxy.to_proxy_model(model).save('model_proxy.h5'))."
        )
    items = calibration if isinstance(calibration, (list, tuple)) else [calibration]
    data = [np.asarray(a, dtype=np.float64) for a in items]
    return Builder(model, RAW, data, aggressive=aggressive).run()


def load_for_cli(path: str, args: argparse.Namespace) -> Graph:
    """``hgqir import model.h5 -o model.hgq`` for HGQ v1 files (``--calibration x.npy`` for raw ones)."""
    calibration = getattr(args, "calibration", None)
    return from_hgq1(path, calibration=np.load(calibration) if calibration else None)
