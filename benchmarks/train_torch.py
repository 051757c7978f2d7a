"""Per-epoch training time of the PyTorch shim against the plain module, side by side.

Two workloads: a 16-64-32-32-5 ReLU MLP on 20,000 synthetic samples (batch 256) and a small
CNN on scikit-learn's digits (batch 128). Each epoch of the plain module is followed by an epoch
of the shim (with ``regularization()`` in the loss, as in real HGQ training), both with Adam, a
single thread and the same data order; the median over the epochs after a warm-up is reported,
as process CPU time (robust on a shared machine) and wall time.

    python benchmarks/train_torch.py [--epochs 12] [--json benchmarks/results/train_torch.json]

The shim trains on hgqir's fused C++ kernels when they build (the default); run with
``HGQIR_TORCH_NATIVE=0`` to time the pure-Python training path (same values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from hgqir.frontends.torch.fast import native as torch_native
from torch import nn

import hgqir

HERE = os.path.dirname(os.path.abspath(__file__))


def mlp_task() -> tuple[nn.Module, torch.Tensor, torch.Tensor, int]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 16, generator=g)
    w = torch.randn(16, 5, generator=g)
    y = (x @ w + 0.5 * torch.randn(20000, 5, generator=g)).argmax(1)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)
    )
    return net, x, y, 256


def cnn_task() -> tuple[nn.Module, torch.Tensor, torch.Tensor, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    )
    return net, x, y, 128


def _epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    order: torch.Tensor,
    reg: Callable[[], torch.Tensor] | None,
) -> tuple[float, float]:
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(x), batch):
        idx = order[start : start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        if reg is not None:
            loss = loss + reg()
        loss.backward()
        opt.step()
    return time.process_time() - cpu, time.perf_counter() - wall


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def run(name: str, task: Callable[[], Any], epochs: int, warmup: int, beta: float) -> dict[str, Any]:
    net, x, y, batch = task()
    plain = net
    shim = hgqir.quantize_torch(net, x[:1024], beta=beta)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=3e-3)
    opt_shim = torch.optim.Adam(
        [{"params": shim.weight_parameters()}, {"params": shim.bit_parameters(), "lr": 3e-2}], lr=3e-3
    )
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "shim": [], "shim_no_reg": []}
    gen = torch.Generator().manual_seed(1)
    for epoch in range(epochs + warmup):
        order = torch.randperm(len(x), generator=gen)
        t_plain = _epoch(plain, opt_plain, x, y, batch, order, None)
        t_shim = _epoch(shim, opt_shim, x, y, batch, order, shim.regularization)
        t_free = _epoch(shim, opt_shim, x, y, batch, order, None) if epoch % 3 == 0 else None
        if epoch >= warmup:
            times["plain"].append(t_plain)
            times["shim"].append(t_shim)
            if t_free is not None:
                times["shim_no_reg"].append(t_free)
    g = hgqir.from_torch(shim, x[:1024], calibration=x)
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in times.items()}
    return {
        "model": name,
        "samples": len(x),
        "batch": batch,
        "epochs_timed": epochs,
        "plain_cpu_s": med["plain"][0],
        "shim_cpu_s": med["shim"][0],
        "ratio_cpu": med["shim"][0] / med["plain"][0],
        "plain_wall_s": med["plain"][1],
        "shim_wall_s": med["shim"][1],
        "ratio_wall": med["shim"][1] / med["plain"][1],
        "shim_no_reg_cpu_s": med["shim_no_reg"][0],
        "ratio_no_reg_cpu": med["shim_no_reg"][0] / med["plain"][0],
        "accuracy_plain": _accuracy(plain, x, y),
        "accuracy_shim": _accuracy(shim, x, y),
        "ebops_start_to_end": [None, hgqir.bops(g).total],
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<6} {'plain s/epoch':>14} {'shim s/epoch':>13} {'ratio':>6} {'(wall)':>7} {'no reg':>7} {'acc plain/shim':>15} {'EBOPs':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<6} {r['plain_cpu_s']:>14.4f} {r['shim_cpu_s']:>13.4f} {r['ratio_cpu']:>5.2f}x "
            f"{r['ratio_wall']:>6.2f}x {r['ratio_no_reg_cpu']:>6.2f}x "
            f"{r['accuracy_plain']:>7.3f}/{r['accuracy_shim']:.3f} {r['ebops_start_to_end'][1]:>9.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12, help="timed epochs per model")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--beta", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--flush-denormal",
        action="store_true",
        help="torch.set_flush_denormal(True) for both modules (Adam's moments of pruned bitwidths "
        "decay through the subnormal range, which is slow on x86)",
    )
    p.add_argument("--json", default=os.path.join(HERE, "results", "train_torch.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        p.error("this CPU cannot flush denormals")
    rows = []
    for name, task in (("mlp", mlp_task), ("cnn", cnn_task)):
        net, x, _, _ = task()
        start = hgqir.quantize_torch(net, x[:1024]).ebops().item()
        row = run(name, task, args.epochs, args.warmup, args.beta)
        row["ebops_start_to_end"][0] = start
        rows.append(row)
    print(_table(rows))
    print(
        "ratio = shim / plain per-epoch process CPU time (median); (wall) = wall-clock ratio; "
        "no reg = shim without regularization() in the loss; "
        f"training path: {'fused C++ kernels' if torch_native.available() else 'Python (HGQIR_TORCH_NATIVE=0)'}"
        f"{'; denormals flushed' if args.flush_denormal else ''}"
    )
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": args.threads,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "beta": args.beta,
        "flush_denormal": args.flush_denormal,
        "fused_kernels": torch_native.available(),
    }
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
