"""The PyTorch side of the one option language, :class:`hgqir.ShimConfig` (``frontends/shim_config.py``).

``quantize_torch(module, x, config=cfg)`` takes a config; the keywords of older releases
(``weight={"granularity": "channel", "f": 4}``, ``activation=QuantizerConfig(overflow="SAT")``,
``bit_l1=...``, ``softmax_exp_f=...``) are the config's own fields and keep working, alone or
over ``config=``. :func:`torch_config` builds the config and refuses what PyTorch cannot honour,
with a message that says what to change: nothing is silently ignored.

>>> cfg = torch_config({"weight": {"f": 4}}, beta=1e-5)
>>> cfg.weight.f, cfg.beta
(4.0, 1e-05)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hgqir.errors import HgqirError
from hgqir.ops.table import MAX_TABLE_BITS

from ..shim_config import PLACES, BetaSchedule, Granularity, LayerOverride, QuantizerConfig, ShimConfig

__all__ = ["BetaSchedule", "Granularity", "LayerOverride", "QuantizerConfig", "ShimConfig", "torch_config"]

ACTIVATION_PLACES = ("input", "activation", "output")
"""Places whose quantizers follow (or learn) a value range: ``signed`` applies to these."""


class ConfigError(HgqirError, ValueError):
    """A ShimConfig field the PyTorch shim cannot honour as given."""


def torch_config(options: dict[str, Any], beta: float | None = None) -> ShimConfig:
    """The config of ``quantize_torch(..., beta=beta, **options)``, checked for PyTorch.

    ``beta``, when given, overrides the config's ``beta``."""
    cfg = ShimConfig.from_options(options)
    if beta is not None:
        cfg = replace(cfg, beta=float(beta))
    check(cfg)
    return cfg


def check(cfg: ShimConfig) -> None:
    """Raise :class:`ConfigError` for what PyTorch cannot honour (see the module docstring)."""
    layers = [("", {p: getattr(cfg, p) for p in PLACES})]
    layers += [(name, {p: getattr(over, p) for p in PLACES}) for name, over in cfg.overrides.items()]
    for name, places in layers:
        where = f" (override {name!r})" if name else ""
        for place, qc in places.items():
            if qc is not None and qc.signed is not None and place not in ACTIVATION_PLACES:
                raise ConfigError(
                    f"{place}.signed={qc.signed}{where}: the sign bit of {place} quantizers follows their values; "
                    f"signed applies to {', '.join(ACTIVATION_PLACES)} only"
                )
    if not 1 <= cfg.table_bits <= MAX_TABLE_BITS:
        raise ConfigError(f"table_bits={cfg.table_bits}: tables are indexed by 1 to {MAX_TABLE_BITS} bits")
    if cfg.i_decay < 0:
        raise ConfigError(f"i_decay={cfg.i_decay}: the running integer bits decay by a non-negative amount per step")
    for field in ("table_f", "softmax_exp_f", "softmax_inv_f", "softmax_sum_f"):
        if int(getattr(cfg, field)) != getattr(cfg, field):
            raise ConfigError(f"{field}={getattr(cfg, field)}: a number of fractional bits is an integer")


def unmatched_overrides(cfg: ShimConfig, names: list[str]) -> list[str]:
    """Override patterns that match none of ``names`` (module paths and fx node names)."""
    out = []
    for pattern in cfg.overrides:
        probe = replace(cfg, overrides={pattern: cfg.overrides[pattern]})
        if not any(probe.for_layer(n) is not probe for n in names):
            out.append(pattern)
    return out
