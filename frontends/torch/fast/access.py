"""The only place where hgqir reads private attributes of torch objects, all for speed.

Every use below has a public equivalent that is too slow for a training step of a
trigger-sized model (a step of a few hundred microseconds, where ``nn.Module.__getattr__`` costs
about half a microsecond per lookup), or has none:

* :func:`slot`: where a module keeps a parameter or buffer (its ``_parameters`` or ``_buffers``
  dictionary and the name), read on every call so that tensors replaced by ``.to()``,
  ``.double()`` or ``load_state_dict(assign=True)`` are seen; ``module.get_parameter(name)``
  does the same with a path walk per call.
* :func:`version`: a tensor's version counter (bumped by every in-place change), to know that a
  value computed earlier is still valid; torch has no public accessor.
* :func:`extension_build_directory`: where ``torch.utils.cpp_extension`` builds an extension of
  a given name (the generated header goes there too); its own private helper, so that the
  directory is the one ``cpp_extension.load`` uses.

If a torch release changes any of these, only this module needs to follow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Slot = tuple[dict[str, Any], str]
"""Where a tensor lives: its module's parameter (or buffer) dictionary and its name."""


def slot(module: nn.Module, name: str) -> Slot:
    """The slot of ``module``'s parameter or buffer ``name``: ``read(slot)`` gives the tensor."""
    params = module._parameters
    return (params if name in params else module._buffers, name)


def read(where: Slot) -> Any:
    """The tensor in a slot now."""
    return where[0][where[1]]


def version(tensor: torch.Tensor) -> int:
    """The version counter of ``tensor`` (changes with every in-place update)."""
    return tensor._version


def extension_build_directory(name: str) -> str:
    """The directory ``torch.utils.cpp_extension.load(name=...)`` builds in."""
    from torch.utils import cpp_extension

    return str(cpp_extension._get_build_directory(name, verbose=False))  # type: ignore[attr-defined]
