"""Options of the hls4ml backend (``hgqir.emit(g, "hls4ml", out_dir, **options)``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hgqir.errors import HgqirError

BACKENDS = ("Vitis", "Vivado")
"""hls4ml backends this emitter is tested with (``Vivado`` shares the same C++ library)."""


@dataclass(frozen=True)
class Hls4mlOptions:
    """How to configure the hls4ml project."""

    backend: str = "Vitis"
    """hls4ml backend: ``Vitis`` or ``Vivado``."""
    io_type: str = "io_parallel"
    """Only ``io_parallel``: hls4ml's per-element quantizer layer exists for parallel I/O only."""
    project_name: str = "myproject"
    """Name of the top function and of the project files."""
    part: str = "xcvu13p-flga2577-2-e"
    """FPGA part for synthesis."""
    clock_period: float = 5.0
    """Target clock period in ns."""
    reuse_factor: int = 1
    """hls4ml reuse factor of every layer (1: fully parallel)."""
    strategy: str = "Latency"
    """hls4ml strategy of every layer."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise HgqirError(f"hls4ml backend {self.backend!r} is not supported; use one of {', '.join(BACKENDS)}")
        if self.io_type != "io_parallel":
            raise HgqirError(
                f"io_type {self.io_type!r} is not supported: per-element types need hls4ml's "
                "FixedPointQuantizer, which exists for io_parallel only; use io_type='io_parallel'"
            )
        if not self.project_name.isidentifier():
            raise HgqirError(f"project_name {self.project_name!r} must be a C++ identifier")
        if self.reuse_factor < 1:
            raise HgqirError(f"reuse_factor must be >= 1, got {self.reuse_factor}")
        if self.strategy not in ("Latency", "Resource"):
            raise HgqirError(f"strategy {self.strategy!r}: use 'Latency' or 'Resource'")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> Hls4mlOptions:
        """Options from keyword arguments; unknown names are an error that lists the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise HgqirError(f"unknown hls4ml option(s) {unknown}; valid: {', '.join(sorted(valid))}")
        return cls(**options)
