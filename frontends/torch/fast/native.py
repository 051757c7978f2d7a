"""Fused C++ training kernels of the PyTorch shims (``native/hgq_kernels.cpp``).

On trigger-sized models a training step is dominated by per-call overhead: a Python
``torch.autograd.Function`` costs about 25 µs each way and every quantizer adds about ten small
tensor ops. The kernels make each run of layers (weight and bias casts, linear map or
convolution, ReLU, activation quantizer, layer after layer: ``hgqir::chain``, see
:mod:`.torch_fuse`; the last one of a step also computes the regularizer) one C++ autograd node;
bodies that do not fuse get one node per activation quantizer, per weight block and for the
EBOPs regularizer (``torch.ops.hgqir.*``). The arithmetic is the Python path's
(:mod:`.torch_quant`, :mod:`.torch_bits`): identical quantized values and bit counts, gradients
summed in double.

They are compiled with the system C++ compiler on first use (20-30 s, once per machine;
cached by ``torch.utils.cpp_extension`` under ``TORCH_EXTENSIONS_DIR``). Without a compiler or
with ``HGQIR_TORCH_NATIVE=0`` the shims use the Python path, which gives the same values.
They serve training on CPU only; eval, calibration and export always use the exact Python casts.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import threading
import warnings

import torch

from hgqir.fixed import RoundMode

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "hgq_kernels.cpp")


def _isa() -> str:
    """The x86 vector extension the kernels are built for: ``avx2`` where torch itself
    dispatches to AVX2 or AVX-512 kernels on this CPU, else ``sse41`` (every x86-64 CPU since
    2008); empty elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an older torch: the portable build
        capability = "DEFAULT"
    return "avx2" if capability in ("AVX2", "AVX512") else "sse41"


ISA = _isa()
NAME = "hgqir_kernels_" + re.sub(r"\W", "_", torch.__version__) + (f"_{ISA}" if ISA else "")
"""Build name: one per torch version (a build is only valid for the torch it was built against)
and instruction set (a home directory shared by machines of different CPUs keeps one build for
each)."""
_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "ok": False, "error": None}

ROUND_CODES = {RoundMode.TRN: 1, RoundMode.TRN_ZERO: 2}
"""Training rounding of the kernels: 0 nearest (ties to even), 1 floor, 2 toward zero."""


class Switch:
    """Whether the current training forward of a shim runs on the kernels (set by its bank,
    read by its activation quantizers; a plain object, so it is not module state)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


def round_code(mode: RoundMode) -> int:
    return ROUND_CODES.get(mode, 0)


def enabled() -> bool:
    """The user has not switched the kernels off (``HGQIR_TORCH_NATIVE=0``)."""
    return os.environ.get("HGQIR_TORCH_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def available() -> bool:
    """The kernels are built and loaded (builds them on the first call); False if disabled."""
    if not enabled():
        return False
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _load()
    return bool(_state["ok"])


def load_error() -> str | None:
    """Why the kernels are not in use (None when they are, or before the first attempt)."""
    return None if _state["ok"] else (str(_state["error"]) if _state["error"] else None)


def _load() -> None:
    try:
        if hasattr(torch.ops, "hgqir") and hasattr(torch.ops.hgqir, "act_quant"):
            _state.update(ok=True)
            return
        from torch.utils import cpp_extension

        bindir = os.path.dirname(sys.executable)  # a venv's ninja, when it is not on PATH
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        if not _cached(cpp_extension):
            print(
                "hgqir: building the PyTorch training kernels (once per machine, torch version and instruction set, 20-30 s)",
                file=sys.stderr,
            )
        cpp_extension.load(
            name=NAME,
            sources=[SOURCE],
            extra_cflags=_cflags(),
            is_python_module=False,
            verbose=False,
        )
        _state.update(ok=True)
    except Exception as exc:  # no compiler, no ninja, unsupported platform: the Python path works
        _state.update(ok=False, error=exc)
        warnings.warn(
            f"hgqir: fused PyTorch training kernels unavailable ({type(exc).__name__}: {exc}); "
            "training uses the slower Python path (same results). Set HGQIR_TORCH_NATIVE=0 to silence.",
            RuntimeWarning,
            stacklevel=3,
        )
    finally:
        _state["tried"] = True


def _cflags() -> list[str]:
    """Optimize, never contract ``a * b + c`` into a differently rounded FMA (``-mavx2`` does not
    enable FMA instructions either); on x86-64 the vector extension of :data:`ISA` (AVX2 takes
    about 10 µs off an MLP training step against SSE4.1; every instruction involved rounds
    exactly as its scalar form). No ``errno`` and no trapping floating-point exceptions: they
    let loops with rounding vectorize and change no result."""
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
    if ISA:
        flags.append({"avx2": "-mavx2", "sse41": "-msse4.1"}[ISA])
    return flags


def _cached(cpp_extension: object) -> bool:
    """A build of the kernels already exists (then loading takes well under a second)."""
    try:
        root = cpp_extension._get_build_directory(NAME, verbose=False)  # type: ignore[attr-defined]
    except Exception:
        return False
    return os.path.exists(os.path.join(root, f"{NAME}.so"))
