"""Raw HGQ v1 models (``HQuantize``, ``HDense``, ``HConv2D`` ...): the graph ``to_proxy_model`` makes.

Each H layer is imported as HGQ v1's proxy conversion would write it:

* weights: the kernel (fused with the batchnorm statistics for the ``...BatchNorm`` layers)
  quantized per weight to ``round(kernel_bw)`` fractional bits; the bias quantized to the
  channel's activation fractional bits, then (RND quantizer, per-channel, with a bias) offset by
  half an LSB so that the quantizer can truncate instead, and zeroed on channels HGQ v1 prunes;
* activation quantizers: fractional bits ``round(activation_bw)``, integer bits and sign from
  the range of the quantizer's output on the calibration data (``trace_minmax``), WRAP
  overflow (``aggressive=True``, HGQ v1's default) or SAT;
* a ``relu`` activation: a per-tensor TRN quantizer, the ReLU, then the per-element quantizer.

The ranges are traced exactly: each quantizer's input is evaluated on the calibration data by
the graph built so far, where HGQ v1 evaluates in float32 (see :mod:`.hgq_math` for where the
two can differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.ir import OpKind, Value

from .emit import PLAIN, Builder, Dialect, QuantSpec, affine, conv_reason, merge_add
from .h5model import H5Layer, Shape
from .hgq_math import F32, act_bw_positive, bits_exact, fractional_bits, is_floor, quantize_f32, round_exact
from .proxy import kbi_spec

AFFINE = ("HDense", "HDenseBatchNorm", "HConv1D", "HConv2D", "HConv1DBatchNorm", "HConv2DBatchNorm")
PASSIVE = {
    "PFlatten": "Flatten",
    "PReshape": "Reshape",
    "PConcatenate": "Concatenate",
    "PPermute": "Permute",
    "PDropout": "Dropout",
    "PMaxPooling1D": "MaxPooling1D",
    "PMaxPooling2D": "MaxPooling2D",
    "PAveragePooling1D": "AveragePooling1D",
    "PAveragePooling2D": "AveragePooling2D",
}
"""HGQ v1's passive layers and the Keras 2 layer each computes as."""


@dataclass(frozen=True)
class Trace:
    """One activation quantizer's traced range and fractional bits (arrays of its ``fbw`` shape)."""

    lo: np.ndarray
    hi: np.ndarray
    f: np.ndarray
    floor: bool

    def spec(self, pos_only: bool, rnd: str, sat: str, shape: Shape) -> QuantSpec:
        k, i, f = bits_exact(self.lo, self.hi, self.f, pos_only)
        return kbi_spec(k, k + i + f, k + i, rnd, sat, shape)


def _sat(b: Builder) -> str:
    return "WRAP" if b.options.get("aggressive", True) else "SAT"


def trace(layer: H5Layer, z: np.ndarray) -> Trace:
    """The range of the layer's activation quantizer output on the values ``z`` (batch first)."""
    conf = layer.config.get("paq_conf") or {}
    fbw = layer.weight("activation_bw")
    f = fractional_bits(fbw, conf)
    floor = _paq_floor(layer)
    batched_f = np.broadcast_to(f, (1, *z.shape[1:])) if f.ndim == z.ndim else f
    xq = round_exact(z, batched_f, floor)
    axes = tuple(a for a in range(z.ndim) if a == 0 or (a < fbw.ndim and fbw.shape[a] == 1))
    return Trace(xq.min(axis=axes, keepdims=True), xq.max(axis=axes, keepdims=True), f, floor)


def _paq_floor(layer: H5Layer) -> bool:
    strategy = (layer.config.get("paq_conf") or {}).get("rnd_strategy", "standard_round")
    if strategy == "auto":  # HGQ v1 picks round when the bias can absorb it (HActivation: always round)
        return layer.cls != "HActivation" and not _bias_covers_rnd(layer)
    return is_floor(strategy)


def _bias_covers_rnd(layer: H5Layer) -> bool:
    """HGQ v1's ``can_bias_cover_rnd``: a bias and a per-tensor or per-channel quantizer."""
    if layer.cls not in AFFINE or not layer.config.get("use_bias", True):
        return False
    q = layer.weight("activation_bw").shape
    return int(np.prod(q)) == 1 or (int(np.prod(q[:-1])) == 1 and layer.weight("bias").shape == q[-1:])


def _quantize_layer(b: Builder, layer: H5Layer, x: Value, name: str) -> Value:
    t = trace(layer, b.evaluate(x))
    return b.quant(x, t.spec(False, "TRN" if t.floor else "RND", _sat(b), x.shape), name)


# ---------------------------------------------------------------- affine layers
def _fused(layer: H5Layer) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 kernel and bias with the batchnorm statistics folded in, as HGQ v1 fuses them."""
    kernel = layer.weight("kernel").astype(F32)
    bias = layer.weight("bias").astype(F32) if layer.config.get("use_bias", True) else None
    if not layer.cls.endswith("BatchNorm"):
        return kernel, bias
    cfg = layer.config
    eps = F32(cfg.get("epsilon", 1e-3))
    # HGQ v1 does not save scale / center in the config: the weights it created tell
    if "bn_gamma" in layer.weights:
        scale = layer.weight("bn_gamma").astype(F32) * (F32(1) / np.sqrt(layer.weight("moving_variance") + eps))
        kernel = (kernel * scale).astype(F32)
    else:  # HGQ v1 still folds gamma = 1, variance = 1 into the bias (its fused_bias)
        scale = F32(1) / np.sqrt(F32(1) + eps)
    if "bn_beta" in layer.weights and bias is not None:
        bias = (bias - layer.weight("moving_mean").astype(F32) * scale + layer.weight("bn_beta")).astype(F32)
    return kernel, bias


def _qkernel(layer: H5Layer, kernel: np.ndarray) -> np.ndarray:
    conf = layer.config.get("kq_conf") or {}
    f = fractional_bits(layer.weight("kernel_bw"), conf)
    return quantize_f32(kernel, f, is_floor(conf.get("rnd_strategy", "standard_round")))


def _channel_max(a: np.ndarray) -> np.ndarray:
    """Max over every axis but the last (HGQ v1's per-channel reduction of a quantizer array)."""
    return np.asarray(a).max(axis=tuple(range(np.ndim(a) - 1))) if np.ndim(a) > 1 else np.asarray(a)


def _qbias(layer: H5Layer, bias: np.ndarray) -> np.ndarray:
    """HGQ v1's ``bias_forward``: the bias rounded to its channel's activation fractional bits."""
    f = np.broadcast_to(
        _channel_max(fractional_bits(layer.weight("activation_bw"), layer.config["paq_conf"])), bias.shape
    )
    return quantize_f32(bias, f, _paq_floor(layer))


def _deployed_bias(layer: H5Layer, qbias: np.ndarray, t: Trace, relu: bool) -> tuple[np.ndarray, bool]:
    """HGQ v1's ``fused_qbias`` (offset by half an LSB when it covers rounding, zero on pruned
    channels) and whether the offset was applied (the quantizer then truncates)."""
    f = np.broadcast_to(_channel_max(t.f), qbias.shape)
    covers = not t.floor and _bias_covers_rnd(layer)
    bias = (np.ldexp(F32(1), -f - 1).astype(F32) + qbias).astype(F32) if covers else qbias
    live = np.broadcast_to(_channel_max(act_bw_positive(t.lo, t.hi, t.f, relu)), bias.shape)
    return np.where(live, bias, F32(0)), covers


def _affine(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    kernel, bias = _fused(layer)
    qkernel = _qkernel(layer, kernel)
    qbias = _qbias(layer, bias) if bias is not None else None
    relu = layer.config.get("activation") == "relu"
    with b.scratch():  # the range HGQ v1 traces: before the bias offset and the pruning mask
        t = trace(layer, b.evaluate(affine(b, layer, xs[0], qkernel, qbias)))
    covers = False
    if qbias is not None:
        qbias, covers = _deployed_bias(layer, qbias, t, relu)
    y = affine(b, layer, xs[0], qkernel, qbias)
    rnd = "TRN" if t.floor or covers else "RND"
    if not relu:
        return b.quant(y, t.spec(False, rnd, _sat(b), y.shape), f"{layer.name}_quantizer")
    # HGQ v1: one per-tensor TRN quantizer (one spare fractional bit for RND), ReLU, then per element
    k, i, f = (int(a.max()) for a in bits_exact(t.lo, t.hi, t.f, False))
    extra = 1 if rnd == "RND" else 0
    fq1 = kbi_spec(np.array(k), np.array(k + i + f + extra), np.array(k + i), "TRN", _sat(b), y.shape)
    y = b.add(OpKind.RELU, [b.quant(y, fq1, f"{layer.name}_quantizer")], f"{layer.name}_relu")
    return b.quant(y, t.spec(True, rnd, _sat(b), y.shape), f"{layer.name}_relu_quantizer")


# ---------------------------------------------------------------- other layers
def _hquantize(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return _quantize_layer(b, layer, xs[0], layer.name)


def _hactivation(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    x = xs[0]
    if layer.config.get("activation") == "relu":
        x = b.add(OpKind.RELU, [x], layer.name)
    return _quantize_layer(b, layer, x, f"{layer.name}_quantizer")


def _hadd(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return _quantize_layer(b, layer, merge_add(b, xs, layer.name), f"{layer.name}_quantizer")


def _signature_spec(b: Builder, layer: H5Layer, shape: Shape) -> QuantSpec:
    cfg = layer.config
    return kbi_spec(
        np.array(cfg["keep_negative"]), np.array(cfg["bits"]), np.array(cfg["int_bits"]), "TRN", _sat(b), shape
    )


def _signature(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return b.quant(xs[0], _signature_spec(b, layer, xs[0].shape), layer.name)


def _passive(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return PLAIN[PASSIVE[layer.cls]](b, layer, xs)


def _input_spec(b: Builder, layer: H5Layer, shape: Shape) -> QuantSpec | None:
    if layer.cls == "Signature":
        return _signature_spec(b, layer, shape)
    if layer.cls != "HQuantize":
        return None
    assert b.data is not None
    t = trace(layer, b.data[b.model.inputs.index(layer.inputs[0])])
    return t.spec(False, "TRN" if t.floor else "RND", _sat(b), shape)


def _reason(layer: H5Layer) -> str | None:
    cfg = layer.config
    act = cfg.get("activation", "linear")
    if layer.cls in (*AFFINE, "HActivation") and act not in ("relu", "linear"):
        return f"activation {act!r} is applied in float; only relu and linear are exact"
    if layer.cls.startswith("HConv"):
        return conv_reason(cfg)
    if layer.cls in PASSIVE and "Pooling" in layer.cls and cfg.get("data_format", "channels_last") != "channels_last":
        return "only channels_last pooling is supported"
    return None


CONVERTERS: dict[str, Any] = {
    **{cls: _affine for cls in AFFINE},
    "HQuantize": _hquantize,
    "HActivation": _hactivation,
    "HAdd": _hadd,
    "Signature": _signature,
    **{cls: _passive for cls in PASSIVE},
}

RAW = Dialect("raw", CONVERTERS, _reason, _input_spec)
"""The raw dialect: HGQ v1's H and P layers, typed from the calibration data."""
