"""The shim body on the kernels, quantizer by quantizer (for bodies that do not fuse into chains).

:func:`kernel_graph` rewrites the body's graph: the bank's call becomes a :class:`BankKernel`
(one ``hgqir::weight_quant`` call per rounding mode casts every weight; activation quantizers get
views of the raw ``f``, table and pooling quantizers rounded ones) and every plain activation
quantizer an :class:`ActKernel` (``hgqir::act_quant``: quantize, update the running range, one
autograd node). Everything else (tables, softmax, pooling, ``+ - *``, batchnorm-free layers) runs
as in the body, on the same modules. Same values as the Python path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import Tensor

from ..shim.quant import RoundSTE
from .access import Slot, slot
from .fuse import bank_slots, group_index, plain_quantizer
from .plan import TrainRound

if TYPE_CHECKING:
    from ..shim.module import QuantizedModule


class BankKernel:
    """The bank's forward on the kernels: the same outputs, four per spec (see :mod:`..shim.bank`)."""

    __module__ = __name__
    __name__ = "bank_kernel"

    def __init__(self, qmod: QuantizedModule, raw: set[int]) -> None:
        bank = self.bank = qmod.bank
        self.f_slot = bank_slots(qmod)[0]
        sources: list[Slot] = [slot(module, name) for module, name in qmod.param_sources()]
        pos = {n: k for k, n in enumerate(bank.param_specs)}
        self.blocks = [
            ([4 * n for n in b.specs], [sources[pos[n]] for n in b.specs], bank.f_offset(b.specs[0]), mode_of(qmod, b))
            for b in bank.blocks
        ]
        """Per block: output slots, weight slots, ``f`` offset, training rounding."""
        first = len(bank.blocks)
        self.rest = [(n, first + k, n in raw, bank.specs[n].group) for k, n in enumerate(bank.rest)]
        """Per other spec: its index, its piece of ``f``, whether it takes the raw piece, its group shape."""
        self.size = 4 * len(bank.specs)

    def __call__(self) -> tuple[Tensor | None, ...]:
        out: list[Tensor | None] = [None] * self.size
        d, k = self.f_slot
        f = d[k]
        for outs, weights, offset, mode in self.blocks:
            qs = torch.ops.hgqir.weight_quant(f, [wd[wk] for wd, wk in weights], offset, mode)
            for at, q in zip(outs, qs, strict=True):
                out[at] = q
        pieces = f.split(self.bank.f_sizes)
        ranges = self.bank.range_views()
        for n, piece, raw, group in self.rest:
            out[4 * n] = pieces[piece] if raw else RoundSTE.apply(pieces[piece]).view(group)
            out[4 * n + 2], out[4 * n + 3] = ranges[n]
        return tuple(out)


def mode_of(qmod: QuantizedModule, block: Any) -> int:
    return int(TrainRound.of(qmod.bank.specs[block.specs[0]].config.round))


class ActKernel:
    """A plain activation quantizer on ``hgqir::act_quant`` (takes the raw ``f`` view)."""

    __module__ = __name__

    def __init__(self, gidx: Tensor | None, mode: TrainRound, index: int, decay: float = 1.0) -> None:
        self.gidx = gidx if gidx is not None else torch.zeros(0, dtype=torch.int64)
        self.mode = int(mode)
        self.decay = float(decay)
        self.__name__ = f"act_kernel{index}"  # the name of this callable in the generated code

    def __call__(self, x: Tensor, f: Tensor, vmax: Tensor, vmin: Tensor) -> Tensor:
        return torch.ops.hgqir.act_quant(x, f, vmax, vmin, self.gidx, self.mode, self.decay)  # type: ignore[no-any-return]


def kernel_graph(qmod: QuantizedModule) -> fx.Graph:
    """The body's graph with the bank and the plain activation quantizers on the kernels."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    body = qmod.body
    bank_node = next(n for n in body.graph.nodes if n.op == "call_module" and n.target == "hgq")
    specs = {name: spec for spec, name in qmod.plan.modules.items()}
    raw = {specs[str(n.target)] for n in body.graph.nodes if _plain(qmod, n)}
    count = 0
    for node in body.graph.nodes:
        if node.op == "get_attr" and set(node.users) == {bank_node}:
            continue  # weights: the bank kernel reads them itself
        if node is bank_node:
            env[node] = graph.call_function(BankKernel(qmod, raw), ())
        elif _plain(qmod, node):
            spec = specs[str(node.target)]
            mode = TrainRound.of(qmod.bank.specs[spec].config.round)
            decay = body.get_submodule(str(node.target)).decay
            kernel = ActKernel(group_index(qmod, spec), mode, count, decay)
            count += 1
            env[node] = graph.call_function(kernel, tuple(env[a] for a in node.args))  # type: ignore[index]
        else:
            env[node] = graph.node_copy(node, lambda a: env[a])
    graph.lint()
    return graph


def _plain(qmod: QuantizedModule, node: fx.Node) -> bool:
    """A call of a plain activation quantizer with its four bank outputs."""
    return (
        node.op == "call_module" and len(node.args) == 4 and plain_quantizer(qmod.body.get_submodule(str(node.target)))
    )
