"""The fused C++ training kernels against the Python training path they replace.

Both paths must produce the same quantized values, running ranges and EBOPs, bit for bit, and
the same gradients up to the summation order of the ``f`` gradients (the kernels sum in double).
"""

from __future__ import annotations

import copy
import math
import pathlib

import numpy as np
import pytest
import torch
from hgqir.frontends.torch.fast import native as torch_native
from hgqir.frontends.torch.fast.plan import EBOPS_HEADER, ChainLayer, LayerKind, pack_plan
from hgqir.frontends.torch.shim.quant import FreeQuant
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hgqir
from hgqir.fixed import RoundMode

pytestmark = pytest.mark.filterwarnings("ignore:.*Sparse CSR.*")


@pytest.fixture(autouse=True, scope="module")
def _kernels() -> None:
    """Several tests call ``torch.ops.hgqir.*`` directly: load the kernels first, whatever runs
    before them in this worker."""
    assert torch_native.available(), torch_native.load_error()


def test_kernels_build_here() -> None:
    # CI has a compiler: the kernels must build (a silent fallback would hide a broken build)
    assert torch_native.available(), torch_native.load_error()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    )


def _on_kernels(qmod: nn.Module) -> bool:
    """The shim's last training forward ran on the kernels."""
    acc = qmod.accelerator
    return acc is not None and acc.ran


def _step(qmod: nn.Module, x: torch.Tensor, native: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """One training forward + regularization + backward on one path."""
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1" if native else "0")
    qmod.train()
    out = qmod(x)
    reg = qmod.regularization()
    assert _on_kernels(qmod) is native
    (out.square().mean() + reg).backward()
    return {
        "out": out.detach(),
        "reg": reg.detach(),
        "ranges": (qmod.bank.vmax.clone(), qmod.bank.vmin.clone()),
        "gf": qmod.bank.f.grad.clone(),
        "gw": [p.grad.clone() for p in qmod.weight_parameters()],
    }


def _spread(shim: nn.Module) -> nn.Module:
    with torch.no_grad():  # spread the bitwidths so that rounding, pruning and ranges all vary
        g = torch.Generator().manual_seed(3)
        shim.bank.f.copy_(torch.randint(-2, 9, shim.bank.f.shape, generator=g).to(shim.bank.f.dtype) + 0.3)
    return shim


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))


def _compare(
    make: object, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch, exact_weights: bool = True, **options: object
) -> None:
    """Fused layers, unfused kernels and the Python path on one step. ``exact_weights=False``:
    a first conv layer with few channels (its input gradient is computed in another order)
    feeds another layer's weights, which then agree to rounding only."""
    shim = _spread(hgqir.quantize_torch(make(), x, beta=1e-3, **options))  # type: ignore[operator]
    python = _step(copy.deepcopy(shim), x, False, monkeypatch)
    unfused = copy.deepcopy(shim)
    unfused.accelerator.fuse = False
    for kernels in (_step(copy.deepcopy(shim), x, True, monkeypatch), _step(unfused, x, True, monkeypatch)):
        assert torch.equal(kernels["out"], python["out"])
        assert torch.equal(kernels["reg"], python["reg"])
        for a, b in zip(kernels["ranges"], python["ranges"], strict=True):  # type: ignore[call-overload]
            assert torch.equal(a, b)
        for a, b in zip(kernels["gw"], python["gw"], strict=True):  # type: ignore[call-overload]
            assert torch.equal(a, b) if exact_weights else _close(a, b)
        assert _close(kernels["gf"], python["gf"])  # type: ignore[arg-type]
    assert float(python["gf"].abs().sum()) > 0  # type: ignore[union-attr]


@pytest.mark.parametrize("rnd", ["RND", "TRN", "TRN_ZERO"])
def test_fused_step_equals_python_step_mlp(rnd: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)) * 3
    cfg = {"round": rnd}
    _compare(_mlp, x, monkeypatch, weight=cfg, bias=cfg, activation=cfg, input=cfg)


@pytest.mark.parametrize("granularity", ["element", "channel", "tensor"])
def test_fused_step_equals_python_step_cnn(granularity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    _compare(_cnn, x, monkeypatch, activation={"granularity": granularity})


def test_fused_step_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def make() -> nn.Module:
        return _mlp().double()

    _compare(make, x, monkeypatch)


def _two_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    )


def _uneven_conv() -> nn.Module:  # rectangular kernels and strides; "same" with an even kernel pads unevenly
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0)),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2, padding="same"),
        nn.Flatten(),
        nn.Linear(4 * 7 * 3, 3),
    )


def _conv1d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 5, 5, stride=3, padding=2),
        nn.ReLU(),
        nn.Conv1d(5, 2, 4, padding="same", bias=False),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(2 * 3, 3, bias=False),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    ("make", "shape"), [(_two_conv, (24, 1, 8, 8)), (_uneven_conv, (16, 2, 7, 6)), (_conv1d, (16, 3, 20))]
)
def test_fused_conv_layers_equal_python_step(
    make: object, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    _compare(make, x, monkeypatch, exact_weights=False)


def test_layers_fuse_into_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")
    # MLP: one chain of its three linear layers, the first also quantizing the input; CNN: the
    # conv layer with the input quantizer, then (after the pooling) the linear layer with its
    # input quantizer: two chains of one layer
    linear, conv = LayerKind.LINEAR, LayerKind.CONV
    for make, layers in ((_mlp, [(linear,) * 3]), (_cnn, [(conv,), (linear,)])):
        shim = hgqir.quantize_torch(make(), torch.randn(8, *((6,) if make is _mlp else (2, 6, 6))))
        module = shim.accelerator.fused_module()
        assert module is not None
        graph = module.graph
        found = shim.accelerator.chains()
        assert [tuple(layer.kind for layer in c.layers) for c in found] == layers
        assert found[0].layers[0].i_off >= 0  # the input quantizer rides in the first layer
        assert [c.cost is not None for c in found] == [False] * (len(found) - 1) + [True]
        assert not any(n.op == "call_module" for n in graph.nodes)  # neither the bank nor a quantizer module
        assert not any(n.op == "get_attr" for n in graph.nodes)  # chains read their weights themselves
    torch.manual_seed(0)
    table = hgqir.quantize_torch(nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3)), torch.randn(8, 6))
    assert table.accelerator.fused_module() is None  # a table quantizer reads the bank: the unfused kernels run


def test_fused_shim_pickles_and_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(8))
    shim = hgqir.quantize_torch(_mlp(), x, beta=1e-3)
    first = _step(shim, x, True, monkeypatch)
    assert shim.accelerator.fused_module() is not None
    path = f"{tmp_path}/shim.pt"
    torch.save(shim, path)  # the generated forward is not pickled; it is rebuilt on first use
    for other in (torch.load(path, weights_only=False), copy.deepcopy(shim)):
        other.bank.f.grad = None
        for p in other.weight_parameters():
            p.grad = None
        again = _step(other, x, True, monkeypatch)
        assert torch.equal(again["out"], first["out"])
        assert torch.equal(again["gf"], first["gf"])


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([1, 2]),
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(3, 9),
)
def test_conv_layer_gradients(nd: int, ci: int, co: int, k: int, stride: int, pad: int, size: int) -> None:
    # the fused conv layer against torch's conv: same output, same weight gradient, and an
    # input gradient (the fold, for these few channels) equal up to summation order
    if (size + 2 * pad - k) // stride + 1 < 1:
        return
    g = torch.Generator().manual_seed(nd * 1000 + ci * 100 + k * 10 + stride)
    x = torch.randn(5, ci, *(size,) * nd, generator=g, requires_grad=True)
    w = (torch.randint(-8, 8, (co, ci, *(k,) * nd), generator=g) / 4.0).requires_grad_()  # exact at f = 2
    f = torch.full((w.numel(),), 2.0)
    none = torch.zeros(0)
    plan = pack_plan([ChainLayer(LayerKind.CONV, w_off=0, stride=(stride,) * nd, pad=(pad,) * nd)])
    y = torch.ops.hgqir.chain.default(x, [w], f, none, none, plan)
    conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = conv(x2, w2, None, stride, pad)
    assert torch.equal(y, ref)
    grad = torch.randn(ref.shape, generator=g)
    y.backward(grad)
    ref.backward(grad)
    assert torch.equal(w.grad, w2.grad)
    assert torch.allclose(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_table_quantizers_ride_along(monkeypatch: pytest.MonkeyPatch) -> None:
    # sigmoid's quantizer is not fused; it gets a rounded f view in a fused step
    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3))

    _compare(make, torch.randn(32, 6, generator=torch.Generator().manual_seed(4)), monkeypatch)


def test_unsupported_layouts_stay_on_python(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(16, 6)
    shim = hgqir.quantize_torch(_mlp(), x, weight={"overflow": "SAT"})  # learned integer bits
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")
    shim.train()
    shim(x).sum().backward()
    assert shim.accelerator is None  # the kernels cannot run its bank
    shim.eval()  # eval is always the exact Python cast
    shim(x)
    assert not _on_kernels(shim)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2),
    st.lists(st.floats(-300, 300, allow_nan=False), min_size=1, max_size=40),
    st.integers(-140, 140),
)
def test_act_kernel_matches_free_quant(mode: int, values: list[float], f_int: int) -> None:
    # includes fractional bits beyond the normal range (|f| >= 126), where the kernel divides
    rmode = {0: RoundMode.RND_CONV, 1: RoundMode.TRN, 2: RoundMode.TRN_ZERO}[mode]
    x = torch.tensor(values, dtype=torch.float32).reshape(-1, 1).repeat(1, 3)
    f = torch.tensor([f_int, 3.4, -1.6], dtype=torch.float32)
    vmax, vmin = torch.full((3,), -math.inf), torch.full((3,), math.inf)
    q = torch.ops.hgqir.act_quant(x, f, vmax, vmin, torch.zeros(0, dtype=torch.int64), mode)
    ref_max, ref_min = torch.full((3,), -math.inf), torch.full((3,), math.inf)
    ref = FreeQuant.apply(x, torch.round(f), rmode, ref_max, ref_min)
    np.testing.assert_array_equal(q.numpy(), ref.numpy())
    np.testing.assert_array_equal(vmax.numpy(), ref_max.numpy())
    np.testing.assert_array_equal(vmin.numpy(), ref_min.numpy())


def test_act_kernel_gradients() -> None:
    x = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    f = torch.tensor([0.2, 1.0, 2.6, 4.0], dtype=torch.float64, requires_grad=True)
    vmax, vmin = torch.full((4,), -math.inf, dtype=torch.float64), torch.full((4,), math.inf, dtype=torch.float64)
    q = torch.ops.hgqir.act_quant(x, f, vmax, vmin, torch.zeros(0, dtype=torch.int64), 0)
    g = torch.randn(8, 4, dtype=torch.float64)
    q.backward(g)
    assert torch.equal(x.grad, g)  # straight through
    expected = -math.log(2.0) * (g * (q.detach() - x.detach())).sum(0)
    assert torch.allclose(f.grad, expected, rtol=1e-12, atol=1e-15)


def test_switching_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "0")
    assert not torch_native.available()
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")
    assert torch_native.available()


def test_parallel_kernels_are_deterministic() -> None:
    # large tensors run on ATen's threads; results must not depend on the thread count
    g = torch.Generator().manual_seed(5)
    x = torch.randn(96, 4096, generator=g) * 4
    f = (torch.rand(4096, generator=g) * 8 - 1).requires_grad_()
    grad = torch.randn(96, 4096, generator=g)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            vmax, vmin = torch.full((4096,), -math.inf), torch.full((4096,), math.inf)
            f.grad = None
            q = torch.ops.hgqir.act_quant(x, f, vmax, vmin, torch.zeros(0, dtype=torch.int64), 0)
            q.backward(grad)
            results.append((q.detach(), vmax, vmin, f.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    ref = FreeQuant.apply(x, torch.round(f.detach()), RoundMode.RND_CONV, None, None)
    assert torch.equal(results[0][0], ref)


def test_failed_build_falls_back_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine without a compiler: the shim still trains, on the Python path, with the same values
    monkeypatch.setitem(torch_native._state, "tried", True)
    monkeypatch.setitem(torch_native._state, "ok", False)
    monkeypatch.setitem(torch_native._state, "error", RuntimeError("no compiler"))
    assert not torch_native.available()
    assert "no compiler" in (torch_native.load_error() or "")
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(6))
    shim = hgqir.quantize_torch(_mlp(), x, beta=1e-3)
    shim.train()
    (shim(x).square().mean() + shim.regularization()).backward()
    assert not _on_kernels(shim)
    assert float(shim.bank.f.grad.abs().sum()) > 0


@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_ebops_kernel_unit_values_equal_general_path(make: object) -> None:
    # all CSR values are 1 in these models, so the index ships none and the kernel takes its
    # unit path (no products, gradient scattered from M); the general path, given the explicit
    # ones, must agree exactly: value and gradient
    x = torch.randn(8, *((6,) if make is _mlp else (2, 6, 6)), generator=torch.Generator().manual_seed(5))
    shim = _spread(hgqir.quantize_torch(make(), x, beta=1e-3))  # type: ignore[operator]
    shim.train()
    with torch.no_grad():
        shim(x)  # ranges
    index, values = shim.accelerator.ebops_index()
    assert values.numel() == 0
    header = {name: int(index[at]) for at, name in enumerate(EBOPS_HEADER)}
    ones = torch.ones(header["m_col"] + header["n_col"], dtype=torch.float64)
    ws = [d[k] for d, k in shim.accelerator.weights]
    results = []
    for vals in (values, ones):
        f = shim.bank.f.detach().clone().requires_grad_()
        cost = torch.ops.hgqir.ebops.default(f, ws, shim.bank.vmax, shim.bank.vmin, index, vals, 1e-3, 1e-2)
        cost.backward()
        results.append((cost.detach(), f.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert results[0][1].abs().sum() > 0


@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_fused_step_allows_in_place_changes_of_its_input_and_output(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as on the Python path (and for a plain module whose first op keeps no copy of its input),
    # the caller may change the step's input and output in place before the backward pass: the
    # chains keep q - x of the quantizers that touch them, not the tensors themselves
    monkeypatch.setenv("HGQIR_TORCH_NATIVE", "1")
    x = torch.randn(8, *((6,) if make is _mlp else (2, 6, 6)), generator=torch.Generator().manual_seed(9))
    grads = []
    for fused in (True, False):
        shim = _spread(hgqir.quantize_torch(make(), x, beta=1e-3))  # type: ignore[operator]
        shim.accelerator.fuse = fused
        shim.train()
        xin = x.clone()
        out = shim(xin)
        reg = shim.regularization()
        xin.mul_(2.0)
        out.add_(1.0)
        (out.square().mean() + reg).backward()
        grads.append([p.grad for p in shim.parameters()])
    for fused_grad, unfused_grad in zip(*grads, strict=True):
        assert torch.equal(fused_grad, unfused_grad)


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path: pathlib.Path) -> None:
    """An interrupted kernel build leaves a lock file PyTorch would wait on forever."""
    import os

    lock = tmp_path / "lock"
    lock.touch()
    assert not torch_native.remove_stale_lock(str(tmp_path))  # another process building now
    assert lock.exists()
    old = lock.stat().st_mtime - torch_native.STALE_LOCK_SECONDS - 1
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="interrupted kernel build"):
        assert torch_native.remove_stale_lock(str(tmp_path))
    assert not lock.exists()
    assert not torch_native.remove_stale_lock(str(tmp_path))  # nothing left to remove
