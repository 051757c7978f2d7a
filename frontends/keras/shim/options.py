"""The Keras side of the one option language, :class:`hgqir.ShimConfig` (``frontends/shim_config.py``).

``quantize_keras(model, config=cfg)`` takes the same config as ``quantize_torch``; the
keywords of older releases keep working and are translated into config fields:

============================  ==========================================================
old keyword                   ShimConfig field(s)
============================  ==========================================================
``granularity``               ``input.granularity``, ``activation.granularity``
``round`` / ``overflow``      ``input`` and ``activation`` ``round`` / ``overflow``
``signed``                    ``input.signed``, ``activation.signed``
``f0`` / ``i0``               ``input`` and ``activation`` ``f`` / ``i``
``weight_granularity``        ``weight`` and ``bias`` ``granularity``
``weight_round``              ``weight.round``, ``bias.round``
``weight_f0``                 ``weight.f``, ``bias.f``
``softmax_exp_kif``           ``softmax_exp_f`` (k=0, i=1 as before)
``softmax_inv_f``             ``softmax_sum_f`` (the old name of the exp sum's bits)
``softmax_inv_kif``           ``softmax_inv_f`` (k=0, i=1 as before)
``table_kif``                 per-function output types (kept as a Keras extra)
============================  ==========================================================

What the Keras shim cannot honour is refused with a message (nothing is silently ignored):
``bit_l1``, saturating weight quantizers, learned weight integer bits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hgqir.errors import HgqirError
from hgqir.fixed import OverflowMode
from hgqir.ops.table import MAX_TABLE_BITS

from ...shim_config import PLACES, QuantizerConfig, ShimConfig

ACTS = ("input", "activation")
WEIGHTS = ("weight", "bias")


class ConfigError(HgqirError, ValueError):
    """A ShimConfig field the Keras shim cannot honour as given."""


def _to(places: tuple[str, ...], key: str) -> Any:
    return lambda v: {p: {key: v} for p in places}


def _kif_f(field: str, option: str) -> Any:
    def convert(v: Any) -> dict[str, Any]:
        k, i, f = (int(x) for x in v)
        if (k, i) != (0, 1):
            raise ConfigError(f"{option}={tuple(v)}: the table entries have k=0, i=1; give only f via {field}=")
        return {field: f}

    return convert


LEGACY = {
    "granularity": _to(ACTS, "granularity"),
    "round": _to(ACTS, "round"),
    "overflow": _to(ACTS, "overflow"),
    "signed": _to(ACTS, "signed"),
    "f0": _to(ACTS, "f"),
    "i0": _to(ACTS, "i"),
    "weight_granularity": _to(WEIGHTS, "granularity"),
    "weight_round": _to(WEIGHTS, "round"),
    "weight_f0": _to(WEIGHTS, "f"),
    "softmax_exp_kif": _kif_f("softmax_exp_f", "softmax_exp_kif"),
    "softmax_inv_f": lambda v: {"softmax_sum_f": int(v)},
    "softmax_inv_kif": _kif_f("softmax_inv_f", "softmax_inv_kif"),
}
"""Old ``quantize_keras`` keywords -> updates of ShimConfig fields."""

DEFAULT_I = 2.0
"""Initial integer bits of saturating activation quantizers when the config leaves ``i`` unset."""


@dataclass(frozen=True)
class KerasConfig:
    """A checked :class:`ShimConfig` plus the Keras-only per-function table output types."""

    shim: ShimConfig
    table_kif: tuple[tuple[str, tuple[int, int, int]], ...] = ()


def keras_config(options: dict[str, Any], beta: float | None = None) -> KerasConfig:
    """The config of ``quantize_keras(model, beta=beta, **options)``, checked for Keras."""
    options = dict(options)
    table_kif = options.pop("table_kif", ())
    if isinstance(table_kif, dict):
        table_kif = tuple(table_kif.items())
    try:
        cfg = ShimConfig.from_options(options, legacy=LEGACY)
    except TypeError as e:
        raise TypeError(f"quantize_keras: {e}") from None
    if beta is not None:
        cfg = replace(cfg, beta=float(beta))
    check(cfg)
    kifs = tuple((str(name), tuple(int(v) for v in kif)) for name, kif in table_kif)
    return KerasConfig(cfg, kifs)  # type: ignore[arg-type]


def check(cfg: ShimConfig) -> None:
    """Raise :class:`ConfigError` for what the Keras shim cannot honour (see the module docstring)."""
    layers: list[tuple[str, dict[str, QuantizerConfig | None]]] = [("", {p: getattr(cfg, p) for p in PLACES})]
    layers += [(name, {p: getattr(over, p) for p in PLACES}) for name, over in cfg.overrides.items()]
    for name, places in layers:
        where = f" (override {name!r})" if name else ""
        for place in WEIGHTS:
            qc = places[place]
            if qc is None:
                continue
            if qc.overflow is not OverflowMode.WRAP or qc.i is not None:
                raise ConfigError(
                    f"{place}{where}: Keras weight and bias quantizers take their integer bits from the values "
                    "(overflow WRAP, i unset); only granularity, round and f apply"
                )
            if qc.signed is not None:
                raise ConfigError(f"{place}.signed{where}: the sign bit of {place} quantizers follows their values")
    if cfg.bit_l1:
        raise ConfigError("bit_l1: the Keras shim has no L1 penalty on bitwidths yet (use beta, or PyTorch)")
    if not 1 <= cfg.table_bits <= MAX_TABLE_BITS:
        raise ConfigError(f"table_bits={cfg.table_bits}: tables are indexed by 1 to {MAX_TABLE_BITS} bits")
    if cfg.i_decay < 0:
        raise ConfigError(f"i_decay={cfg.i_decay}: the running integer bits decay by a non-negative amount per step")


def activation_kwargs(qc: QuantizerConfig, i_decay: float, nonneg: bool) -> dict[str, Any]:
    """Keyword arguments of :class:`~.quant.Quantizer` for one activation place."""
    return dict(
        granularity=qc.granularity.value,
        round=qc.round.name,
        overflow=qc.overflow.name,
        signed=qc.signed,
        k0=0.0 if nonneg else 1.0,
        i0=DEFAULT_I if qc.i is None else float(qc.i),
        f0=float(qc.f),
        i_decay=float(i_decay),
    )


def weight_kwargs(qc: QuantizerConfig, granularity: str | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`~.quant.WeightQuantizer` for a weight or bias place."""
    return dict(granularity=granularity or qc.granularity.value, round=qc.round.name, f0=float(qc.f))
