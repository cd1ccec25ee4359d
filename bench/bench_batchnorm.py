"""Forward+backward time of bnlab's BatchNorm divided by torch's native BatchNorm, on this CPU.

Run: .venv/bin/python bench/bench_batchnorm.py [--repeats 15] [--threads N]

Both layers run in training mode (batch statistics, running-statistics update) on the same input and upstream
gradient, with one torch thread by default; each repeat times ours and torch's back to back (interleaved, so the
load of other processes hits both alike) in process CPU time, and the script prints the ratio of the best times and
the median per-repeat ratio. Goal: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from bnlab.layers.batchnorm import BatchNorm

SHAPES: dict[str, tuple[int, ...]] = {"(N,C)=(128,512)": (128, 512), "(N,C,H,W)=(128,64,32,32)": (128, 64, 32, 32)}


def _step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    y = layer(x)
    y.backward(grad)


def _time(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, inner: int) -> float:
    """CPU seconds of this process per forward+backward (process time, not wall time: on a shared machine the
    time spent waiting for a core is not charged to either layer)."""
    start = time.process_time()
    for _ in range(inner):
        _step(layer, x, grad)
    return (time.process_time() - start) / inner


def bench(shape: tuple[int, ...], repeats: int) -> tuple[float, float, float, float]:
    """(ratio of the best times, median per-repeat ratio, best ours seconds, best torch seconds) for one shape."""
    torch.manual_seed(0)
    c = shape[1]
    ours = BatchNorm(c)
    ref = {2: nn.BatchNorm1d, 4: nn.BatchNorm2d}[len(shape)](c)
    x = torch.randn(shape).requires_grad_(True)
    grad = torch.randn(shape)
    numel = x.numel()
    inner = max(1, int(2_000_000 // numel) * 5) if numel < 1_000_000 else 3
    for layer in (ours, ref):  # warm up
        _time(layer, x, grad, inner)
    ratios, t_ours, t_ref = [], [], []
    for _ in range(repeats):
        a = _time(ours, x, grad, inner)
        b = _time(ref, x, grad, inner)
        t_ours.append(a)
        t_ref.append(b)
        ratios.append(a / b)
    return min(t_ours) / min(t_ref), statistics.median(ratios), min(t_ours), min(t_ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"{'shape':28s} {'ours ms':>9s} {'torch ms':>9s} {'best/best':>10s} {'median ratio':>13s}")
    for name, shape in SHAPES.items():
        best, median, a, b = bench(shape, args.repeats)
        print(f"{name:28s} {a * 1e3:9.3f} {b * 1e3:9.3f} {best:10.2f} {median:13.2f}")


if __name__ == "__main__":
    main()
