"""Fused C++ training kernels of the PyTorch shims (``native/hgq_kernels.cpp``).

On trigger-sized models a training step is dominated by per-call overhead: a Python
``torch.autograd.Function`` costs about 25 µs each way and every quantizer adds about ten small
tensor ops. The kernels make each run of layers (weight and bias casts, linear map or
convolution, ReLU, activation quantizer, layer after layer: ``hgqir::chain``, see
:mod:`.fuse`; the last one of a step also computes the regularizer) one C++ autograd node;
bodies that do not fuse get one node per activation quantizer, per weight block and for the
EBOPs regularizer (``torch.ops.hgqir.*``, see :mod:`.kernel_body`). The arithmetic is the
Python path's (:mod:`..shim.quant`, :mod:`..shim.bits`): identical quantized values and bit
counts, gradients summed in double.

They are compiled with the system C++ compiler on first use (20-30 s, once per machine, kernel
source and instruction set; cached by ``torch.utils.cpp_extension`` under
``TORCH_EXTENSIONS_DIR``). The plan layout the kernels read comes from :mod:`.plan` as a
generated header; the build name carries a digest of the kernel source, that header and the
compiler flags, so two checkouts with different kernels never load each other's build, and the
loaded kernels must report the layout of :mod:`.plan` (else :class:`KernelLayoutError`).
Without a compiler or with ``HGQIR_TORCH_NATIVE=0`` the shims use the Python path, which gives
the same values. They serve training on CPU only; eval, calibration and export always use the
exact Python casts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import re
import sys
import threading
import time
import warnings

import jinja2
import torch

from hgqir.errors import HgqirError

from . import access
from .plan import header_context, layout_hash

_NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native")
SOURCE = os.path.join(_NATIVE, "hgq_kernels.cpp")
HEADER = "hgq_plan.h"
"""Name of the generated plan header (from ``native/hgq_plan.h.j2``) the source includes."""


class KernelLayoutError(HgqirError):
    """The loaded kernels were built with another plan layout than this checkout's."""


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


@functools.cache
def header_text() -> str:
    """The plan header, rendered from :mod:`.plan`."""
    with open(os.path.join(_NATIVE, f"{HEADER}.j2"), encoding="utf-8") as fh:
        template = jinja2.Template(fh.read(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return template.render(header_context())


@functools.cache
def build_name() -> str:
    """One build per torch version (a build is only valid for the torch it was built against),
    instruction set (a home shared by machines of different CPUs keeps one for each) and digest
    of what is compiled (source, generated header, flags)."""
    digest = hashlib.sha256()
    with open(SOURCE, "rb") as fh:
        digest.update(fh.read())
    digest.update(header_text().encode())
    digest.update(" ".join(_cflags()).encode())
    torch_tag = re.sub(r"\W", "_", torch.__version__)
    return f"hgqir_kernels_{torch_tag}" + (f"_{ISA}" if ISA else "") + f"_{digest.hexdigest()[:12]}"


_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "ok": False, "error": None}


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
        if not (hasattr(torch.ops, "hgqir") and hasattr(torch.ops.hgqir, "layout")):
            _build()
        _check_layout()
        _state.update(ok=True)
    except KernelLayoutError:
        raise
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


def _build() -> None:
    """Compile (or load the cached build of) the kernels, with the plan header beside them."""
    from torch.utils import cpp_extension

    name = build_name()
    bindir = os.path.dirname(sys.executable)  # a venv's ninja, when it is not on PATH
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    root = access.extension_build_directory(name)
    remove_stale_lock(root)
    if not os.path.exists(os.path.join(root, f"{name}.so")):
        print(
            "hgqir: building the PyTorch training kernels (once per machine, kernel source and instruction set, 20-30 s)",
            file=sys.stderr,
        )
    include = os.path.join(root, "include")
    os.makedirs(include, exist_ok=True)
    path = os.path.join(include, HEADER)
    if not os.path.exists(path) or open(path, encoding="utf-8").read() != header_text():
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(header_text())
    cpp_extension.load(
        name=name,
        sources=[SOURCE],
        extra_cflags=_cflags(),
        extra_include_paths=[include],
        is_python_module=False,
        verbose=False,
    )


STALE_LOCK_SECONDS = 600
"""A build lock older than this belongs to an interrupted build (a build takes 20-30 s)."""


def remove_stale_lock(root: str) -> bool:
    """Remove the lock file an interrupted build left in ``root`` (True when one was removed).

    PyTorch's extension loader waits, without a time limit, while its build directory holds a
    ``lock`` file; a build killed half-way (Ctrl-C, a killed job) leaves one behind and every
    later run would hang. A lock older than :data:`STALE_LOCK_SECONDS` is removed with a warning;
    a younger one is another process building right now and is left alone."""
    lock = os.path.join(root, "lock")
    try:
        age = time.time() - os.path.getmtime(lock)
    except OSError:
        return False
    if age < STALE_LOCK_SECONDS:
        return False
    warnings.warn(
        f"hgqir: removing the lock file of an interrupted kernel build ({lock}, {age / 60:.0f} min old)",
        RuntimeWarning,
        stacklevel=2,
    )
    with contextlib.suppress(FileNotFoundError):
        os.remove(lock)
    return True


def _check_layout() -> None:
    """Fail loudly if the kernels in this process read another plan layout than :mod:`.plan`."""
    built = int(torch.ops.hgqir.layout())
    if built != layout_hash():
        raise KernelLayoutError(
            f"the loaded hgqir training kernels were built for plan layout {built:#x}, this checkout's is "
            f"{layout_hash():#x} (kernels of another hgqir version were loaded into this process first); "
            "start a new Python process, or set HGQIR_TORCH_NATIVE=0 to train on the Python path"
        )
