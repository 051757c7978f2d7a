"""The hls4ml layer list under construction, and where each IR value lives in it.

Every IR value is *held* by one hls4ml layer output whose single precision represents every
value the IR value can take (see :mod:`.precision`). Lowering rules add layers with
:meth:`LayerList.add` and bind results with :meth:`LayerList.finish`, which appends a
per-element ``FixedPointQuantizer`` exactly where the IR's cast into the declared type is not
already done by the layer itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType, OverflowMode, RoundMode, Shape
from hgqir.ir import Op, Value
from hgqir.ops import cast_needed

from .precision import Kif, is_plain, mask_kbi, to_precision, union_kif

RESERVED = frozenset(
    "input output result model layer alignas alignof and asm auto bitand bitor bool break case catch char "
    "class compl const constexpr continue decltype default delete do double else enum explicit export extern "
    "false float for friend goto if inline int long mutable namespace new noexcept not nullptr operator or "
    "private protected public register return short signed sizeof static struct switch template this throw "
    "true try typedef typeid typename union unsigned using virtual void volatile while xor".split()
)
"""Names hls4ml reserves and C++ keywords (input layer names become C++ argument names)."""
GENERATED = re.compile(r"^(w|b|s|t|layer)\d+$")
"""hls4ml's own identifiers (weights ``w3``, biases ``b3``, ...) that a layer name must not shadow."""


@dataclass(frozen=True)
class Holder:
    """An hls4ml layer output holding an IR value, and the precision it is held in."""

    layer: str
    kif: Kif
    shape: Shape


@dataclass
class LayerRecord:
    """What was requested of one hls4ml layer, checked against the converted model."""

    class_name: str
    precisions: dict[str, Any]
    forced_result: Kif | None = None
    """Result precision hls4ml sets by itself (Transpose and Reshape keep their input's)."""
    mult: tuple[int, int] | None = None
    """``(n_in, n_out)`` of a convolution's kernel product: its reuse factor must divide it validly."""


@dataclass
class LayerList:
    """hls4ml layer dicts in topological order plus the per-layer precision configuration."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, LayerRecord] = field(default_factory=dict)
    holders: dict[int, Holder] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ names
    def unique(self, base: str) -> str:
        """A lower-case C++-safe layer name (hls4ml keys its configuration case-insensitively)."""
        name = re.sub(r"[^a-z0-9_]", "_", base.lower()).strip("_") or "v"
        if name[0].isdigit() or name in RESERVED or GENERATED.match(name):
            name = "v_" + name
        candidate, n = name, 1
        while candidate in self.records:
            candidate = f"{name}_{n}"
            n += 1
        return candidate

    # ------------------------------------------------------------------ layers
    def add(
        self,
        class_name: str,
        base: str,
        inputs: list[Holder],
        attrs: dict[str, Any],
        precisions: dict[str, Any],
        forced_result: Kif | None = None,
        mult: tuple[int, int] | None = None,
    ) -> str:
        """Append one hls4ml layer; ``precisions`` maps hls4ml variable names to precisions."""
        name = self.unique(base)
        layer = {"class_name": class_name, "name": name, **attrs}
        if inputs:
            layer["inputs"] = [h.layer for h in inputs]
        self.layers.append(layer)
        self.records[name] = LayerRecord(class_name, precisions, forced_result, mult)
        return name

    def quantizer(self, src: Holder | str, t: FixedType, round: RoundMode, overflow: OverflowMode, base: str) -> Holder:
        """Cast every element of ``src`` (a holder or a layer name) into its type in ``t``."""
        kif = union_kif(t)
        attrs: dict[str, Any] = {
            "inputs": [src.layer if isinstance(src, Holder) else src],
            "mask_kbi": mask_kbi(t),
            "RND": round.value,
            "SAT": overflow.value,
            "fusible": None,
            "overrides": {},
        }
        name = self.add("FixedPointQuantizer", f"q_{base}", [], attrs, {"result": to_precision(kif)})
        return Holder(name, kif, t.shape)

    def copy(self, src: Holder) -> Holder:
        """A new layer holding the same values (hls4ml needs distinct layers for some outputs)."""
        t = FixedType.uniform(src.shape, *src.kif)
        return self.quantizer(src, t, RoundMode.TRN, OverflowMode.WRAP, f"{src.layer}_copy")

    def signed_copy(self, src: Holder) -> Holder:
        """``src`` held in a signed type (same values): hls4ml pads max pools with the sign bit."""
        k, i, f = src.kif
        t = FixedType.uniform(src.shape, 1, i, f)
        return self.quantizer(src, t, RoundMode.TRN, OverflowMode.WRAP, f"{src.layer}_signed")

    def reshape(self, src: Holder, shape: Shape, base: str) -> Holder:
        """``src`` seen with another shape (io_parallel reshapes move nothing; hls4ml keeps the type)."""
        prec = {"result": to_precision(src.kif)}
        name = self.add("Reshape", base, [src], {"target_shape": list(shape)}, prec, forced_result=src.kif)
        return Holder(name, src.kif, tuple(shape))

    def transpose(self, src: Holder, perm: list[int], base: str) -> Holder:
        """``src`` with its axes permuted (hls4ml keeps the type)."""
        if self.records[src.layer].class_name == "InputLayer" and src.shape[0] == 1:
            src = self.copy(src)  # hls4ml drops transposes of inputs with one leading row, whatever perm
        prec = {"result": to_precision(src.kif)}
        name = self.add("Transpose", base, [src], {"perm": perm}, prec, forced_result=src.kif)
        return Holder(name, src.kif, tuple(src.shape[p] for p in perm))

    # ------------------------------------------------------------------ values
    def holder(self, v: Value) -> Holder:
        try:
            return self.holders[id(v)]
        except KeyError:
            raise HgqirError(f"internal: %{v.name} has no hls4ml layer yet (ops out of order?)") from None

    def bind(self, v: Value, holder: Holder) -> None:
        self.holders[id(v)] = holder

    def finish(self, op: Op, layer: str, kif: Kif, always_cast: bool = False) -> Holder:
        """Bind ``op``'s result to ``layer``, whose output holds the exact result cast into ``kif``.

        A per-element quantizer follows when that is not yet the IR's value: the declared type
        is per element (or pruned) and the exact result does not fit it. ``always_cast``: the
        layer rounds by itself (average pools), so per-element types always need their cast.
        """
        v = op.result
        held = Holder(layer, kif, v.shape)
        done_by_layer = is_plain(v.type) and kif == union_kif(v.type)
        if not done_by_layer and (always_cast or cast_needed(op)[0]):
            held = self.quantizer(held, v.type, RoundMode.TRN, OverflowMode.WRAP, v.name)
        self.bind(v, held)
        return held

    def result_precision(self, v: Value) -> tuple[Kif, dict[str, Any]]:
        """The union kif of ``v`` and the matching ``{"result": precision}`` entry."""
        kif = union_kif(v.type)
        return kif, {"result": to_precision(kif)}

    # ------------------------------------------------------------------ configuration
    def hls_config(self, reuse_factor: int, strategy: str) -> dict[str, Any]:
        """hls4ml's ``HLSConfig``: every layer's precisions set explicitly, hls4ml's bit-exact
        inference off (the IR already fixed every type)."""
        names: dict[str, dict[str, Any]] = {}
        for name, rec in self.records.items():
            names[name] = {"Precision": {var: str(p) for var, p in rec.precisions.items()}}
        model = {
            "Precision": "fixed<16,6>",
            "ReuseFactor": reuse_factor,
            "Strategy": strategy,
            "BitExact": False,
        }
        return {"Model": model, "LayerName": names}
