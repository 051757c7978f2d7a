"""Speed machinery of the PyTorch shims: fused C++ training kernels (optional).

The shim trains without this package (same values, slower). It attaches through one interface,
:class:`hgqir.frontends.torch.shim.accel.Accelerator`: :func:`attach` ("prepare") makes a
:class:`~.training.KernelTraining` for a shim, whose ``forward`` runs a training step and whose
``regularization`` gives the regularizer. Modules: :mod:`.native` (building and loading the
kernels), :mod:`.plan` (the typed plans the kernels read, and the generated C++ header),
:mod:`.fuse` (fused chains of layers), :mod:`.kernel_body` (quantizer-by-quantizer kernels),
:mod:`.step` (chain calls and the kept regularizer), :mod:`.training` (the accelerator),
:mod:`.access` (the only reads of private torch attributes, all for speed).
"""

from __future__ import annotations

from .training import KernelTraining, attach

__all__ = ["KernelTraining", "attach"]
