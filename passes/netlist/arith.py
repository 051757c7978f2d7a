"""Fixed-point operations built from netlist primitives: quantization and constant division."""

from __future__ import annotations

from hgqir.fixed import OverflowMode, RoundMode

from .netlist import ZERO, Netlist, Ref, round_offset


def round_shift(m: int, r: int, mode: str) -> int:
    """Scalar version of the ``shr`` primitive: ``(m + offset) >> r``."""
    return (m + int(round_offset(m, r, mode))) >> r


def quant(net: Netlist, a: Ref, k: int, i: int, f: int, rmode: RoundMode, omode: OverflowMode) -> Ref:
    """Quantize ``a`` to ``(k, i, f)``: rounding, then overflow, as ``hgqir.quantize`` defines them.

    Only the logic the operand's exact bounds require is built: no rounding when the operand's
    LSB is already coarse enough, no overflow handling when its range fits.
    """
    if k + i + f <= 0 or a.node == 0:
        return ZERO
    r = -f - net.exp(a)
    if r > 0 and rmode in (RoundMode.TRN, RoundMode.RND):
        # RND adds 2**(r-1): bits below r-1 can neither carry nor survive, so drop them first
        # (free wiring, and it moves through a relu: only the bits that survive are masked)
        a = truncate(net, a, net.exp(a) + r - (rmode is RoundMode.RND))
        r = -f - net.exp(a)
    if r > 0:
        p = net.plain(a)
        lo, hi = net.bounds(p)
        mode = rmode.value
        a = net.new("shr", (p._replace(dp=0),), (r, mode), -f, round_shift(lo, r, mode), round_shift(hi, r, mode))
        if a.node == 0:
            return ZERO
    e = net.exp(a)
    lo, hi = net.bounds(a)
    if omode is OverflowMode.WRAP:
        s = i - e
        if s < 0:  # every multiple of 2**e is a multiple of 2**(k+i): wraps to 0
            return ZERO
        mmin, mmax = -k * (1 << s), (1 << s) - 1
        if lo >= mmin and hi <= mmax:
            return a
        p = net.plain(a)
        return net.new("wrap", (p._replace(dp=0),), (k + s, bool(k)), net.exp(p), mmin, mmax)
    # saturation can land on the type's finer grid: clip at the type's own LSB
    sh = e + f
    mmin, mmax = -k * (1 << (i + f)), (1 << (i + f)) - 1
    if omode is OverflowMode.SAT_SYM and k and k + i + f > 1:
        mmin = -mmax
    lo, hi = lo << sh, hi << sh
    if lo >= mmin and hi <= mmax:
        return a
    p = net.plain(a)
    arg = (p._replace(dp=0),)
    if omode in (OverflowMode.SAT, OverflowMode.SAT_SYM):
        return net.new("clip", arg, (sh, mmin, mmax), -f, min(max(lo, mmin), mmax), max(min(hi, mmax), mmin))
    if omode is OverflowMode.SAT_ZERO:
        inner_lo, inner_hi = max(lo, mmin), min(hi, mmax)
        if inner_lo > inner_hi:
            return ZERO
        return net.new("zclip", arg, (sh, mmin, mmax), -f, min(inner_lo, 0), max(inner_hi, 0))
    raise ValueError(f"unknown overflow mode {omode}")


def truncate(net: Netlist, a: Ref, e: int) -> Ref:
    """``floor(a / 2**e) * 2**e``: drop the bits of ``a`` below exponent ``e`` (no logic; a relu
    is moved after the cut so that it masks only the bits that are kept)."""
    r = e - net.exp(a)
    if r <= 0 or a.node == 0:
        return a
    p = net.plain(a)
    if net.kind[p.node] == "relu":  # floor(relu(x) / 2**r) = relu(floor(x / 2**r))
        (x,) = net.args[p.node]
        return net.relu(truncate(net, net.shifted(x, p.dp), e))
    lo, hi = net.bounds(p)
    return net.new("shr", (p._replace(dp=0),), (r, "TRN"), e, lo >> r, hi >> r)


def floor_div(net: Netlist, a: Ref, n: int, at: int | None = None) -> Ref:
    """``floor(v / (n * 2**at)) * 2**at`` for the value ``v`` of ``a`` (a multiple of ``2**at``).

    Exact and without a divider. A power of two is a shift. Otherwise the mantissa
    ``m = v / 2**at`` is offset to ``m' >= 0`` below ``2**L`` and ``floor(m' / n)`` is
    ``(m' * M) >> s`` with ``s = L + ceil(log2 n)`` and ``M = ceil(2**s / n)``: the error term
    ``m' * (M*n - 2**s) / (n * 2**s)`` stays below ``1/n`` and cannot cross an integer.
    """
    if a.node == 0:
        return ZERO
    at = net.exp(a) if at is None else at
    if n & (n - 1) == 0:
        r = n.bit_length() - 1
        return net.shifted(truncate(net, a, at + r), -r)
    lo, hi = net.bounds(a)
    lo, hi = lo << (net.exp(a) - at), hi << (net.exp(a) - at)
    base = n * (lo // n) if lo < 0 else 0
    m = net.add(a, net.const(-base, at))
    s = (hi - base).bit_length() + (n - 1).bit_length()
    prod = net.times(m, -(-(1 << s) // n), 0)
    q = net.shifted(truncate(net, prod, at + s), -s)
    return net.add(q, net.const(base // n, at))
