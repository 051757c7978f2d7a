"""HGQ v1 proxy models (``HGQ.proxy.to_proxy_model``): an exact import, no calibration needed.

A proxy model is a plain Keras 2 graph whose dense and convolution layers hold the fused,
already quantized weights (biases already offset by half an LSB where HGQ v1 turned RND into
TRN), with a ``FixedPointQuantizer`` layer after every quantization point. Each quantizer
stores per-element ``keep_negative``, ``bits`` and ``integers`` (sign included) arrays plus
``RND`` / ``SAT`` mode strings, the ``ap_fixed<bits, integers>`` convention; in hgqir's terms
``k = keep_negative``, ``i = integers - k``, ``f = bits - integers``, and zero ``bits`` means the
constant 0. Everything the model computes is in the file, so the import is exact.
"""

from __future__ import annotations

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Value

from .emit import Builder, Dialect, QuantSpec
from .h5model import H5Layer, Shape

ROUND_MODES = ("TRN", "RND", "RND_CONV", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF")
"""HGQ v1 rounding modes; each is the ap_fixed mode of the same name."""
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
"""HGQ v1 overflow modes hgqir has (HGQ v1's WRAP_SM has no ap_fixed counterpart here)."""


def _per_element(a: np.ndarray, shape: Shape) -> np.ndarray:
    """A quantizer parameter (with or without its batch axis of 1) broadcast to ``shape``."""
    a = np.asarray(a, dtype=np.int64)
    if a.ndim == len(shape) + 1:
        a = a.reshape(a.shape[1:])
    return np.broadcast_to(a, shape)


def kbi_spec(
    keep_negative: np.ndarray, bits: np.ndarray, integers: np.ndarray, rnd: str, sat: str, shape: Shape
) -> QuantSpec:
    """The quantizer ``ap_fixed<bits, integers>`` (signed where ``keep_negative``) on a tensor of ``shape``."""
    k, b, i = (_per_element(a, shape) for a in (keep_negative, bits, integers))
    zero = b <= 0
    k, i_kif, f = np.where(zero, 0, k), np.where(zero, 0, i - k), np.where(zero, 0, b - i)
    t = FixedType(shape, k, i_kif, f).canonical()
    return QuantSpec(t, RoundMode.parse(rnd), OverflowMode.parse(sat))


def quantizer_spec(layer: H5Layer, shape: Shape) -> QuantSpec:
    """The spec of a ``FixedPointQuantizer`` layer applied to a tensor of unbatched ``shape``."""
    w = layer.weights
    return kbi_spec(w["keep_negative"], w["bits"], w["integers"], layer.config["RND"], layer.config["SAT"], shape)


def _quantizer(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return b.quant(xs[0], quantizer_spec(layer, xs[0].shape), layer.name)


def _reason(layer: H5Layer) -> str | None:
    cfg = layer.config
    if cfg.get("RND") not in ROUND_MODES:
        return f"rounding mode {cfg.get('RND')!r} is not supported (supported: {', '.join(ROUND_MODES)})"
    if cfg.get("SAT") not in OVERFLOW_MODES:
        return f"overflow mode {cfg.get('SAT')!r} is not supported (supported: {', '.join(OVERFLOW_MODES)})"
    missing = {"keep_negative", "bits", "integers"} - set(layer.weights)
    if missing:
        return f"the file has no {sorted(missing)} arrays for this quantizer"
    return None


def _input_spec(b: Builder, layer: H5Layer, shape: Shape) -> QuantSpec | None:
    return quantizer_spec(layer, shape) if layer.cls == "FixedPointQuantizer" else None


PROXY = Dialect("proxy", {"FixedPointQuantizer": _quantizer}, _reason, _input_spec)
"""The proxy dialect: ``FixedPointQuantizer`` layers on top of plain Keras 2 layers."""
