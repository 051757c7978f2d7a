"""What a shim body is made of besides module state: its quantizers, records and costs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..importer.records import Rec
from .bank import QSpec
from .ebops import CostTerm


@dataclass
class Plan:
    """Everything about a shim body that is not module state (kept by the QuantizedModule)."""

    specs: list[QSpec]
    records: dict[str, Rec]
    """Per body node that becomes IR ops, in graph order (see :mod:`..importer.records`)."""
    costs: list[CostTerm]
    modules: dict[int, str] = field(default_factory=dict)
    """Spec index -> body module that quantizes with it (act quantizers, batchnorms)."""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    bn: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Batchnorm module -> (scale spec, offset spec)."""
