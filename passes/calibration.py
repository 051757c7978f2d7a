"""Calibration data for passes: loading input files and observing every value's range."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hgqir.errors import HgqirError
from hgqir.interp import run_exact
from hgqir.ir import Graph, OpKind, Value


def load_calibration(path: str, g: Graph) -> list[np.ndarray]:
    """Inputs for ``g`` from a ``.npy`` file (one input) or a ``.npz`` file (keys = input names).

    A ``.npz`` whose keys are not the input names is read in key order (``arr_0``, ...).
    """
    file = Path(path)
    if not file.exists():
        raise HgqirError(f"calibration file {path!r} does not exist")
    names = [v.name for v in g.inputs]
    if file.suffix == ".npy":
        if len(names) != 1:
            raise HgqirError(f"graph has inputs {names}; give a .npz file with one array per input name")
        return [np.load(file)]
    with np.load(file) as npz:
        keys = list(npz.keys())
        order = names if set(names) <= set(keys) else sorted(keys)
        if len(order) < len(names):
            raise HgqirError(f"calibration file {path!r} holds {keys}; the graph has inputs {names}")
        return [np.asarray(npz[k]) for k in order[: len(names)]]


def observe(g: Graph, data: np.ndarray | Sequence[np.ndarray]) -> dict[Value, tuple[np.ndarray, np.ndarray]]:
    """Per-element ``(min, max)`` of every value of ``g`` over the calibration batch."""
    arrays = [data] if isinstance(data, np.ndarray) else list(data)
    if not arrays or any(len(a) == 0 for a in arrays):
        raise HgqirError("calibration data is empty; give at least one sample per input")
    exact = run_exact(g, arrays)
    out: dict[Value, tuple[np.ndarray, np.ndarray]] = {}
    for v in g.values():
        if v.producer is not None and v.producer.kind is OpKind.CONST:
            continue  # constants are unbatched and need no observation
        vals = exact[v.name].values()
        out[v] = (vals.min(axis=0), vals.max(axis=0))
    return out
