"""Options of the PyTorch shims: one :class:`QuantizerConfig` per quantizer place.

``quantize_torch(module, x, weight={"granularity": "channel", "f": 4})`` and
``quantize_torch(module, x, activation=QuantizerConfig(overflow="SAT"))`` both work: every
option is a field of :class:`ShimConfig`; quantizer options take a config or a dict of its
fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hgqir.fixed import OverflowMode, RoundMode


class Granularity(enum.Enum):
    """How many learnable bitwidths a quantizer has."""

    ELEMENT = "element"
    """One per tensor element (HGQ's default)."""
    CHANNEL = "channel"
    """One per channel: output channel of a weight, axis 1 (after the batch) of an activation."""
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
    """One quantizer place (input, weights, biases, activations, outputs).

    ``overflow="WRAP"`` (default): integer bits follow the data: the running max of the
    activations in training, fixed by calibration; for weights and biases, exactly what their
    current values need (nothing ever wraps). ``"SAT"``/``"SAT_SYM"``: integer bits are
    learned through the saturation clip's gradient.
    """

    granularity: Granularity = Granularity.ELEMENT
    round: RoundMode = RoundMode.RND
    """Rounding mode of the cast (training uses a fast approximation of the tie rule)."""
    overflow: OverflowMode = OverflowMode.WRAP
    f: float = 6.0
    """Initial fractional bits."""
    i: float | None = None
    """Initial integer bits of saturating quantizers (None: from the example data)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "granularity", Granularity.parse(self.granularity))
        object.__setattr__(self, "round", RoundMode.parse(self.round))
        object.__setattr__(self, "overflow", OverflowMode.parse(self.overflow))
        if self.overflow is OverflowMode.SAT_ZERO:
            raise ValueError("overflow SAT_ZERO has no useful gradient; use WRAP, SAT or SAT_SYM")

    @property
    def learns_i(self) -> bool:
        """Integer bits are a trained parameter (saturating overflow)."""
        return self.overflow is not OverflowMode.WRAP

    @classmethod
    def coerce(cls, value: Any, base: QuantizerConfig) -> QuantizerConfig:
        """A config from a config, a dict of fields (over ``base``) or None (``base``)."""
        if value is None:
            return base
        if isinstance(value, QuantizerConfig):
            return value
        if isinstance(value, dict):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise TypeError(f"unknown quantizer option(s) {unknown}; valid: {sorted(names)}")
            return replace(base, **value)
        raise TypeError(f"expected a QuantizerConfig or a dict, got {type(value).__name__}")


@dataclass(frozen=True)
class ShimConfig:
    """All options of :func:`hgqir.quantize_torch` (and of importing plain float modules)."""

    input: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0))
    weight: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=6.0))
    bias: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0))
    activation: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=6.0))
    output: QuantizerConfig | None = None
    """Quantizer of the model outputs (None: as ``activation``)."""
    constant: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(f=8.0, granularity="tensor"))
    """Scalar constants in ``x * c`` / ``x + c``."""
    table_f: int = 8
    """Fractional bits of sigmoid and tanh table outputs."""
    softmax_exp_f: int = 8
    """Fractional bits of softmax's exp table entries."""
    softmax_inv_f: int = 8
    """Fractional bits of softmax's reciprocal table entries."""
    softmax_sum_f: int = 4
    """Fractional bits the exp sum keeps before the reciprocal table lookup."""
    bit_l1: float = 0.0
    """Weight of an L1 penalty on every learned bitwidth, added by ``regularization()``."""
    sync_stats: bool = True
    """Under torch.distributed, all-reduce the running activation ranges after every training step."""

    @property
    def output_config(self) -> QuantizerConfig:
        return self.output if self.output is not None else self.activation

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ShimConfig:
        """Build from keyword options; a ``config=ShimConfig(...)`` entry is the base."""
        options = dict(options)
        base = options.pop("config", None) or cls()
        if not isinstance(base, ShimConfig):
            raise TypeError("config= must be a ShimConfig")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; valid: {sorted(names)}")
        updates: dict[str, Any] = {}
        for name, value in options.items():
            current = getattr(base, name)
            if name in ("input", "weight", "bias", "activation", "constant"):
                updates[name] = QuantizerConfig.coerce(value, current)
            elif name == "output":
                updates[name] = None if value is None else QuantizerConfig.coerce(value, base.activation)
            else:
                updates[name] = value
        return replace(base, **updates)
