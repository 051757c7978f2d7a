"""Reading a Keras 2 HDF5 model file (as HGQ v1 saves it) with h5py alone.

A Keras 2 ``.h5`` file holds the model's architecture as JSON in the ``model_config`` attribute
and every layer's weights under ``model_weights/<layer>/``, listed in the group's
``weight_names`` attribute. :func:`read_model` turns the file into a :class:`H5Model`: the
layers in topological order, each with its class name (the ``HGQ>`` registration prefix
removed), its config, the names of the layers it reads, and its weights by short name
(``kernel``, ``kernel_bw``, ``bits`` ...). Sequential and Functional models are read; nested
models are reported as unsupported layers by the importer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError, UnsupportedOpError

Shape = tuple[int, ...]


@dataclass
class H5Layer:
    """One layer of the file: class, config, the layers it reads (in operand order) and its weights."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def weight(self, name: str) -> np.ndarray:
        try:
            return self.weights[name]
        except KeyError:
            raise HgqirError(
                f"layer {self.name!r} ({self.cls}) has no weight {name!r} in the file (it has "
                f"{sorted(self.weights)}); was the model saved with model.save(path.h5) after building?"
            ) from None


@dataclass
class H5Model:
    """A Keras 2 model read from HDF5: layers in topological order, input and output layer names."""

    name: str
    layers: list[H5Layer]
    inputs: list[str]
    outputs: list[str]
    input_shapes: dict[str, Shape]
    """Unbatched shape of each input layer."""
    keras_version: str = ""

    def layer(self, name: str) -> H5Layer:
        return next(layer for layer in self.layers if layer.name == name)

    def consumers(self, name: str) -> list[H5Layer]:
        return [layer for layer in self.layers if name in layer.inputs]


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover (h5py is in the hgq1 extra)
        raise HgqirError('reading HGQ v1 .h5 files needs h5py: pip install "hgqir[hgq1]"') from e
    return h5py


def model_config(path: str | Path) -> dict[str, Any]:
    """The ``model_config`` JSON of a Keras 2 HDF5 file."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            raise HgqirError(f"{path}: not a Keras 2 HDF5 model file (no model_config attribute)")
        return dict(json.loads(_text(f.attrs["model_config"])))


def _weights(group: Any) -> dict[str, np.ndarray]:
    """Weights of one layer group, keyed by short name (``dense/kernel:0`` -> ``kernel``)."""
    out: dict[str, np.ndarray] = {}
    for full in group.attrs.get("weight_names", []):
        full = _text(full)
        short = full.rsplit("/", 1)[-1].split(":", 1)[0]
        out[short] = np.asarray(group[full])
    return out


def _inbound(spec: dict[str, Any]) -> list[str]:
    nodes = spec.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise UnsupportedOpError(f"layer {spec['config']['name']!r} is called more than once; hgqir needs one call")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # the Keras 3 style, for a clear error below
        raise HgqirError("this file was saved by Keras 3; use hgqir.from_keras / hgqir.load_keras for it")
    return [str(entry[0]) for entry in node]


def _order(layers: list[H5Layer]) -> list[H5Layer]:
    """Topological order (Keras lists layers in creation order, which is not always topological)."""
    done: set[str] = set()
    out: list[H5Layer] = []
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(i in done for i in layer.inputs)]
        if not ready:
            raise HgqirError(f"model graph has a cycle or unknown inputs at {[p.name for p in pending]}")
        for layer in ready:
            out.append(layer)
            done.add(layer.name)
            pending.remove(layer)
    return out


def _functional(cfg: dict[str, Any]) -> tuple[list[H5Layer], list[str], list[str]]:
    layers = [
        H5Layer(str(s["config"]["name"]), str(s["class_name"]).split(">")[-1], s["config"], _inbound(s))
        for s in cfg["layers"]
    ]
    ins = [str(t[0]) for t in cfg["input_layers"]]
    outs = [str(t[0]) for t in cfg["output_layers"]]
    return layers, ins, outs


def _sequential(cfg: dict[str, Any]) -> tuple[list[H5Layer], list[str], list[str]]:
    specs = list(cfg["layers"])
    if not specs or specs[0]["class_name"] != "InputLayer":
        shape = specs[0]["config"].get("batch_input_shape") if specs else None
        if shape is None:
            raise HgqirError("Sequential model without an input shape; build it with keras.Input first")
        specs.insert(0, {"class_name": "InputLayer", "config": {"name": "input", "batch_input_shape": shape}})
    layers: list[H5Layer] = []
    prev: list[str] = []
    for s in specs:
        name = str(s["config"]["name"])
        layers.append(H5Layer(name, str(s["class_name"]).split(">")[-1], s["config"], prev))
        prev = [name]
    return layers, [layers[0].name], [layers[-1].name]


def _unbatched(name: str, shape: list[Any]) -> Shape:
    if any(d is None for d in shape[1:]):
        raise UnsupportedOpError(
            f"model input {name!r} has shape {shape} with an unknown dimension besides the batch; "
            "hgqir needs fixed shapes (build the HGQ v1 model with keras.Input(full_shape))"
        )
    return tuple(int(d) for d in shape[1:])


def read_model(path: str | Path) -> H5Model:
    """The model stored in a Keras 2 HDF5 file at ``path`` (see the module docstring)."""
    h5py = _h5py()
    top = model_config(path)
    cfg = top.get("config", {})
    if top.get("class_name") == "Sequential":
        layers, ins, outs = _sequential(cfg)
    else:
        layers, ins, outs = _functional(cfg)
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in layers:
            if layer.name in group:
                layer.weights = _weights(group[layer.name])
        version = _text(f.attrs.get("keras_version", ""))
    by_name = {layer.name: layer for layer in layers}
    shapes = {n: _unbatched(n, by_name[n].config["batch_input_shape"]) for n in ins}
    return H5Model(str(cfg.get("name", Path(path).stem)), _order(layers), ins, outs, shapes, version)
