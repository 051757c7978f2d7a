"""Training the shims with plain PyTorch loops (slow): bitwidths move, beta trades EBOPs,
pruned weights are exactly zero, and DistributedDataParallel keeps ranks identical."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from hgqir.frontends.torch import QuantizedModule, calibrate
from hgqir.frontends.torch.testing import check_bit_exact
from torch import nn

import hgqir

pytestmark = pytest.mark.slow


def _data(seed: int = 0, n: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """A 5-class problem on 16 features, learnable by a small MLP."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 5, generator=torch.Generator().manual_seed(99))
    return x, (x @ w + 0.3 * torch.randn(n, 5, generator=g)).argmax(1)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def _train(qmod: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, reg: QuantizedModule | None = None) -> None:
    reg = reg if reg is not None else qmod  # type: ignore[assignment]
    bits = reg.bit_parameters()  # type: ignore[union-attr]
    groups = [{"params": reg.weight_parameters()}, {"params": bits, "lr": 3e-2}]  # type: ignore[union-attr]
    opt = torch.optim.Adam(groups, lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(1)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            idx = perm[start : start + 128]
            opt.zero_grad()
            loss = loss_fn(qmod(x[idx]), y[idx]) + reg.regularization()  # type: ignore[union-attr]
            loss.backward()
            opt.step()


def _accuracy(qmod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((qmod.eval()(x).argmax(1) == y).float().mean())


def test_training_moves_bitwidths_and_beta_trades_ebops() -> None:
    torch.set_num_threads(1)
    x, y = _data()
    results = {}
    for beta in (1e-6, 3e-4):
        qmod = hgqir.quantize_torch(_mlp(), x[:256], beta=beta)
        f0 = qmod.bank.f.detach().clone()
        _train(qmod, x, y, epochs=12)
        assert not torch.equal(qmod.bank.f.detach().round(), f0)  # learned bitwidths moved
        g = hgqir.from_torch(qmod, x, calibration=x)
        check_bit_exact(qmod, g, [x[:512], 4 * x[:512]])
        assert qmod.ebops().item() == hgqir.bops(g).total
        results[beta] = (hgqir.bops(g).total, _accuracy(qmod, x, y), qmod, g)
    (e_lo, acc_lo, _, _), (e_hi, acc_hi, q_hi, g_hi) = results[1e-6], results[3e-4]
    assert acc_lo > 0.85, acc_lo
    assert e_hi < 0.5 * e_lo, (e_lo, e_hi)  # a larger beta gives clearly cheaper hardware
    assert acc_hi > 0.5, acc_hi

    # pruned weights (width <= 0) are exactly zero in the shim and in the graph
    widths = q_hi.bitwidths()
    pruned = sum(int((w <= 0).sum()) for name, w in widths.items() if name.endswith("weight"))
    assert pruned > 0
    bank = q_hi.bank
    params = [q_hi.body.get_parameter(bank.specs[n].source) for n in bank.param_specs]
    q_hi.eval()
    values = bank(*params)
    for n, spec in enumerate(bank.specs):
        if spec.name.endswith("weight"):
            assert torch.all(values[4 * n][torch.from_numpy(widths[spec.name] <= 0)] == 0)
    zero_consts = sum(int(op.result.type.zero_mask.sum()) for op in g_hi.ops if op.kind.value == "const")
    assert zero_consts >= pruned


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, y = _data(seed=rank, n=1024)  # every rank sees different data
        qmod = hgqir.quantize_torch(_mlp(), _data(0, 256)[0], beta=1e-5)
        ddp = DistributedDataParallel(qmod)
        _train(ddp, x, y, epochs=3, reg=qmod)
        state = {k: v.detach().clone() for k, v in qmod.state_dict().items()}
        state["widths"] = {k: torch.from_numpy(v) for k, v in qmod.bitwidths().items()}
        torch.save(state, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_keeps_ranks_identical(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    wa, wb = a.pop("widths"), b.pop("widths")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    assert not torch.equal(a["body.hgq.f"].round(), hgqir.quantize_torch(_mlp(), _data(0, 256)[0]).bank.f.round())


def test_calibrated_shim_after_training_survives_state_dict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, y = _data()
    qmod = hgqir.quantize_torch(_mlp(), x[:256], beta=1e-5)
    _train(qmod, x, y, epochs=2)
    calibrate(qmod, x)
    torch.save(qmod.state_dict(), tmp_path / "shim.pt")
    fresh = hgqir.quantize_torch(_mlp(), x[:256])
    fresh.load_state_dict(torch.load(tmp_path / "shim.pt"))
    g1, g2 = hgqir.from_torch(qmod, x), hgqir.from_torch(fresh, x)
    assert hgqir.dumps(g1) == hgqir.dumps(g2)
    assert np.array_equal(g1.run(x.numpy()), g2.run(x.numpy()))
