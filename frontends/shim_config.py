"""The one option language of the training shims, shared by Keras and PyTorch.

``hgqir.quantize_keras(model, config=cfg)`` and ``hgqir.quantize_torch(module, x0, config=cfg)``
take the same :class:`ShimConfig`; the same config gives the same quantizers, the same initial
bits and the same learned formula in both frameworks. A quantizer *place* (model inputs,
weights, biases, activations, outputs, scalar constants) has one :class:`QuantizerConfig`.

>>> cfg = ShimConfig(weight={"f": 4, "granularity": "channel"}, beta=1e-5)
>>> cfg.weight.granularity, cfg.weight.f, cfg.activation.f
(<Granularity.CHANNEL: 'channel'>, 4.0, 6.0)
>>> cfg.for_layer("dense_1") is cfg                       # no override matches: the config itself
True
>>> over = ShimConfig(overrides={"conv*": {"weight": {"f": 3}}})
>>> over.for_layer("conv2").weight.f, over.for_layer("dense").weight.f
(3.0, 6.0)
>>> BetaSchedule(1e-6, 1e-4, epochs=2)(0), BetaSchedule(1e-6, 1e-4, epochs=2)(5)
(1e-06, 0.0001)

Only the standard library and :mod:`hgqir.fixed` are imported here, so the config can
be built (and pickled) without Keras or PyTorch.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hgqir.fixed import OverflowMode, RoundMode

PLACES = ("input", "weight", "bias", "activation", "output", "constant")
"""Quantizer places a config (and a per-layer override) can set."""


class Granularity(enum.Enum):
    """How many learnable bitwidths a quantizer has."""

    ELEMENT = "element"
    """One per tensor element (HGQ's default)."""
    CHANNEL = "channel"
    """One per channel: the output channel of a weight; the channel axis of an activation in the
    framework's own layout (last axis in Keras, axis 1 in PyTorch)."""
    TENSOR = "tensor"
    """One for the whole tensor."""

    @classmethod
    def parse(cls, value: Granularity | str) -> Granularity:
        if isinstance(value, Granularity):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown granularity {value!r}; valid: {valid}") from None


@dataclass(frozen=True)
class QuantizerConfig:
    """One quantizer place.

    ``overflow="WRAP"``: integer bits follow the data (the running range of the activations in
    training, fixed by calibration; for weights and biases, exactly what their current values
    need, so nothing ever wraps). ``"SAT"`` / ``"SAT_SYM"``: integer bits are learned through the
    saturation clip's gradient.
    """

    granularity: Granularity = Granularity.ELEMENT
    round: RoundMode = RoundMode.RND
    """Rounding mode of the cast (any ap_fixed mode)."""
    overflow: OverflowMode = OverflowMode.WRAP
    f: float = 6.0
    """Initial fractional bits."""
    i: float | None = None
    """Initial integer bits of saturating quantizers (None: from the example / first batch)."""
    signed: bool | None = None
    """Sign bit of activation quantizers; None: calibration decides per element."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "granularity", Granularity.parse(self.granularity))
        object.__setattr__(self, "round", RoundMode.parse(self.round))
        object.__setattr__(self, "overflow", OverflowMode.parse(self.overflow))
        object.__setattr__(self, "f", float(self.f))
        if self.i is not None:
            object.__setattr__(self, "i", float(self.i))
        if self.overflow is OverflowMode.SAT_ZERO:
            raise ValueError("overflow SAT_ZERO has no useful gradient; use WRAP, SAT or SAT_SYM")

    @property
    def learns_i(self) -> bool:
        """Integer bits are a trained parameter (saturating overflow)."""
        return self.overflow is not OverflowMode.WRAP

    @classmethod
    def coerce(cls, value: Any, base: QuantizerConfig) -> QuantizerConfig:
        """A config from a config, a dict of fields (applied over ``base``) or None (``base``)."""
        if value is None:
            return base
        if isinstance(value, QuantizerConfig):
            return value
        if isinstance(value, Mapping):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise TypeError(f"unknown quantizer option(s) {unknown}; valid: {sorted(names)}")
            return replace(base, **dict(value))
        raise TypeError(f"expected a QuantizerConfig or a dict of its fields, got {type(value).__name__}")


class ScheduleKind(enum.Enum):
    LOG = "log"
    """Geometric ramp: ``start * (end / start) ** (epoch / epochs)`` (HGQ's usual choice)."""
    LINEAR = "linear"
    """Straight line from ``start`` to ``end``."""


@dataclass(frozen=True)
class BetaSchedule:
    """``beta(epoch)``: from ``start`` at epoch 0 to ``end`` at ``epochs``, then held at ``end``."""

    start: float
    end: float
    epochs: int
    kind: ScheduleKind = ScheduleKind.LOG

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ScheduleKind(self.kind))
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.kind is ScheduleKind.LOG and (self.start <= 0) != (self.end <= 0):
            raise ValueError("a log schedule needs start and end of the same sign and non-zero; use kind='linear'")

    def __call__(self, epoch: int) -> float:
        if self.epochs == 0 or epoch >= self.epochs:
            return float(self.end)
        t = max(epoch, 0) / self.epochs
        if self.kind is ScheduleKind.LINEAR or self.start == self.end:
            return float(self.start + (self.end - self.start) * t)
        return float(self.start * math.exp(t * math.log(self.end / self.start)))


@dataclass(frozen=True)
class LayerOverride:
    """Quantizer places of one layer (or of every layer matching a name pattern) that differ."""

    input: QuantizerConfig | None = None
    weight: QuantizerConfig | None = None
    bias: QuantizerConfig | None = None
    activation: QuantizerConfig | None = None
    output: QuantizerConfig | None = None
    constant: QuantizerConfig | None = None


@dataclass(frozen=True)
class ShimConfig:
    """All options of :func:`hgqir.quantize_keras` and :func:`hgqir.quantize_torch`.

    Quantizer places take a :class:`QuantizerConfig` or a dict of its fields (applied over the
    default of that place). ``overrides`` maps a layer name (Keras layer name, PyTorch module
    path or fx node name; ``fnmatch`` patterns such as ``"conv*"`` allowed) to the places that
    differ for that layer; the first matching pattern in insertion order wins.
    """

    input: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0))
    """Quantizer of the model inputs."""
    weight: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=6.0))
    """Kernels of dense / conv layers and batchnorm scales."""
    bias: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0))
    """Biases of dense / conv layers and batchnorm offsets."""
    activation: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=6.0))
    """Inputs of every layer that computes with values (dense, conv, merges, tables, ...)."""
    output: QuantizerConfig | None = None
    """Quantizer of the model outputs (None: as ``activation``)."""
    constant: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0, granularity="tensor"))
    """Scalar constants in ``x * c`` / ``x + c``."""
    beta: float = 0.0
    """Weight of EBOPs in the regularizer (the ``beta=`` argument overrides it)."""
    beta_schedule: Callable[[int], float] | None = None
    """``beta(epoch)``, e.g. a :class:`BetaSchedule`; Keras applies it in ``fit``, PyTorch in
    ``qmod.set_epoch(epoch)``. None: ``beta`` stays constant."""
    bit_l1: float = 0.0
    """Weight of an L1 penalty on every learned bitwidth, added to the regularizer."""
    resource: str = "ebops"
    """What ``beta`` weighs: ``"ebops"``, or ``"lut"``: the LUTs the calibrated hardware cost model
    predicts for EBOPs (``beta`` is then per LUT; see docs/verilog.md#cost-model)."""
    i_decay: float = 0.01
    """Per-step decay of the running integer bits of WRAP activation quantizers in training."""
    table_f: int = 8
    """Fractional bits of function table outputs (tanh, sigmoid, ...)."""
    table_bits: int = 16
    """Largest table input width (index bits) of function and softmax tables."""
    softmax_exp_f: int = 8
    """Fractional bits of softmax's exp table entries (type ``(0, 1, exp_f)``)."""
    softmax_sum_f: int = 8
    """Fractional bits the exp sum keeps (TRN) before the reciprocal table lookup."""
    softmax_inv_f: int = 8
    """Fractional bits of softmax's reciprocal table entries (type ``(0, 1, inv_f)``)."""
    sync_stats: bool = True
    """PyTorch under torch.distributed: all-reduce the running activation ranges every step."""
    overrides: Mapping[str, LayerOverride] = field(default_factory=dict)
    """Per-layer quantizer places by layer name or ``fnmatch`` pattern."""

    def __post_init__(self) -> None:
        for name in PLACES:
            value = getattr(self, name)
            if name == "output" and value is None:
                continue
            default = self.activation if name == "output" else _DEFAULTS[name]
            object.__setattr__(self, name, QuantizerConfig.coerce(value, default))
        object.__setattr__(self, "overrides", {str(k): _override(v, self) for k, v in dict(self.overrides).items()})
        if self.resource not in ("ebops", "lut"):
            raise ValueError(f"resource must be 'ebops' or 'lut', got {self.resource!r}")

    def resource_scale(self) -> float:
        """Factor from EBOPs to the regularized resource (1 for EBOPs, LUTs per EBOP for ``lut``)."""
        if self.resource == "ebops":
            return 1.0
        from hgqir.passes.netlist.cost import lut_per_ebop

        return lut_per_ebop()

    @property
    def output_config(self) -> QuantizerConfig:
        return self.output if self.output is not None else self.activation

    def beta_at(self, epoch: int) -> float:
        """``beta`` for an epoch: the schedule's value, or the constant ``beta``."""
        return float(self.beta_schedule(epoch)) if self.beta_schedule is not None else float(self.beta)

    def for_layer(self, name: str) -> ShimConfig:
        """This config with the first override matching ``name`` applied (itself when none does)."""
        for pattern, over in self.overrides.items():
            if pattern == name or fnmatch.fnmatchcase(name, pattern):
                changes = {p: getattr(over, p) for p in PLACES if getattr(over, p) is not None}
                return replace(self, **changes, overrides={}) if changes else self
        return self

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], legacy: Mapping[str, Callable[[Any], dict[str, Any]]] | None = None
    ) -> ShimConfig:
        """A config from keyword options; a ``config=ShimConfig(...)`` entry is the base.

        ``legacy`` maps a framework's older keyword names to functions that turn the value into
        updates of ShimConfig fields (so that old keyword arguments keep working).
        """
        options = dict(options)
        base = options.pop("config", None)
        if base is None:
            base = cls()
        if not isinstance(base, ShimConfig):
            raise TypeError(f"config= must be a hgqir.ShimConfig, got {type(base).__name__}")
        names = {f.name for f in fields(cls)}
        legacy = dict(legacy or {})
        unknown = sorted(set(options) - names - set(legacy))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; valid: {sorted(names | set(legacy))}")
        updates: dict[str, Any] = {}
        for name, value in options.items():
            if name in legacy:
                for key, val in legacy[name](value).items():
                    updates[key] = _merge(updates.get(key, getattr(base, key)), val) if key in PLACES else val
            elif name in PLACES:
                current = updates.get(name, getattr(base, name))
                updates[name] = (
                    None if value is None and name == "output" else _merge(current or base.activation, value)
                )
            else:
                updates[name] = value
        return replace(base, **updates) if updates else base


_DEFAULTS = {f.name: f.default_factory() for f in fields(ShimConfig) if f.name in PLACES and f.name != "output"}  # type: ignore[misc]


def _merge(current: QuantizerConfig, value: Any) -> QuantizerConfig:
    return QuantizerConfig.coerce(value, current)


def _override(value: Any, cfg: ShimConfig) -> LayerOverride:
    """A LayerOverride from one, or from a dict ``{place: QuantizerConfig | dict}``."""
    if isinstance(value, LayerOverride):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"an override must be a LayerOverride or a dict of places, got {type(value).__name__}")
    unknown = sorted(set(value) - set(PLACES))
    if unknown:
        raise TypeError(f"unknown override place(s) {unknown}; valid: {list(PLACES)}")
    return LayerOverride(
        **{
            p: QuantizerConfig.coerce(v, getattr(cfg, p) if p != "output" else cfg.output_config)
            for p, v in value.items()
        }
    )
