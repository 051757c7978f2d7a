"""Options of the Vitis HLS backend: one frozen dataclass, checked on construction."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hgqir.errors import HgqirError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class VitisOptions:
    """Everything ``hgqir.emit(g, "vitis", out_dir, **options)`` accepts."""

    top: str = "myproject"
    """Name of the top function (and of the project files)."""
    reuse: int | Mapping[str, int] = 1
    """Reuse factor of dense and conv layers: 1 is fully parallel (latency); R > 1 shares each
    multiplier over R cycles. An int applies to every layer; a mapping gives factors by the
    layer's result value name, with ``"*"`` as the default."""
    part: str = "xcvu13p-flga2577-2-e"
    """FPGA part for ``build_prj.tcl``."""
    clock_ns: float = 5.0
    """Clock period for ``build_prj.tcl``."""
    csim: bool = True
    csynth: bool = True
    cosim: bool = False
    export: bool = False
    """Default steps of ``build_prj.tcl`` (each can be overridden with ``-tclargs step=0/1``)."""
    tb_samples: int = 32
    """Random testbench samples (inside and far outside each input's range)."""
    tb_inputs: Any = None
    """Testbench inputs instead of random ones: an array (or a list, one per graph input), batch first."""
    seed: int = 0
    ap_types: str | None = None
    """Folder holding ``ap_fixed.h``; default: the one shipped with the installed hls4ml."""
    cxx: str | None = None
    """C++ compiler for the C simulation (default ``g++``)."""
    opt_level: str = "-O1"
    cflags: tuple[str, ...] = ()
    """Extra g++ flags for the C simulation, e.g. ``("-DHGQ_AP_INT_ONLY",)`` to simulate every
    integer as ``ap_int`` instead of native 64-bit integers."""
    jobs: int | None = None
    """Parallel g++ processes (default: the number of CPUs)."""
    threads: int | None = None
    """Threads of ``predict`` (default: the number of CPUs)."""
    stack_mb: int = 0
    """Stack of each ``predict`` thread in MiB (0: estimated from the design)."""

    def __post_init__(self) -> None:
        if not _IDENT.match(self.top):
            raise HgqirError(f"top function name {self.top!r} is not a C identifier")
        for name, factor in self.reuse_items():
            if not isinstance(factor, int) or factor < 1:
                raise HgqirError(f"reuse factor for {name!r} must be an integer >= 1, got {factor!r}")
        if self.tb_samples < 1:
            raise HgqirError("tb_samples must be at least 1")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> VitisOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise HgqirError(f"unknown vitis option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**options)

    def reuse_items(self) -> list[tuple[str, Any]]:
        if isinstance(self.reuse, Mapping):
            return list(self.reuse.items())
        return [("*", self.reuse)]

    def reuse_for(self, value_name: str) -> int:
        """Reuse factor of the layer whose result is ``value_name``."""
        if isinstance(self.reuse, Mapping):
            return int(self.reuse.get(value_name, self.reuse.get("*", 1)))
        return int(self.reuse)
