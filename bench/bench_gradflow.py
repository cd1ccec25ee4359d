"""Looped vs batched (vmap) vector-Jacobian products for the gradient-flow probe's layer Jacobians, on this CPU.

Run: .venv/bin/python bench/bench_gradflow.py [--repeats 5] [--probes 4] [--threads 1]

`bnlab.probes.gradflow` estimates ‖J_l‖²_F of every layer Jacobian with Hutchinson probes, one VJP per probe in a
Python loop. The alternative is one batched VJP per layer (``torch.autograd.grad(..., is_grads_batched=True)``, which
vmaps the backward). On a depth-50, width-256 ReLU deep_mlp with torch's BN (batch 128, batch statistics), each
repeat times both back to back in process CPU time (interleaved, so other processes' load hits both alike) and the
script prints the ratio loop / batched of the best times and the median per-repeat ratio (> 1: batching pays), and
checks both give the same numbers. bnlab's own BN is not in the comparison: its analytic backward works in place
and cannot run under vmap, so the probe has to loop there anyway.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bnlab.models import build_model
from bnlab.probes.gradflow import layer_jacobians


def _looped(maps: list, us: list[torch.Tensor]) -> list[float]:
    return [sum(float(j.rmatvec(u).double().pow(2).sum()) for u in batch) for j, batch in zip(maps, us)]


def _batched(graph: list[tuple[torch.Tensor, torch.Tensor]], us: list[torch.Tensor]) -> list[float]:
    out = []
    for (a, b), batch in zip(graph, us):
        (g,) = torch.autograd.grad(b, a, batch, retain_graph=True, is_grads_batched=True)  # (P, *a.shape)
        out.append(float(g.double().pow(2).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("deep_mlp", norm="torch_bn", depth=50, width=256, in_shape=(784,))
    x = torch.randn(128, 784)  # (N, D)
    with layer_jacobians(model, x, bn="train") as maps:
        graph = [(j.rmatvec.__self__.a, j.rmatvec.__self__.b) for j in maps]  # (input, output) of each layer map
        gen = torch.Generator().manual_seed(0)
        us = [torch.randn((args.probes, *j.out_shape), generator=gen) for j in maps]  # (P, N, d_out) per layer
        _looped(maps, us), _batched(graph, us)  # warm-up
        loop_t, batch_t, ratios = [], [], []
        for _ in range(args.repeats):
            t0 = time.process_time()
            a = _looped(maps, us)
            t1 = time.process_time()
            b = _batched(graph, us)
            t2 = time.process_time()
            loop_t.append(t1 - t0)
            batch_t.append(t2 - t1)
            ratios.append((t1 - t0) / (t2 - t1))
        worst = max(abs(p - q) / p for p, q in zip(a, b))
    print(f"layer-Jacobian Hutchinson, {len(maps)} layers x {args.probes} probes, threads {args.threads}")
    print(f"looped best {min(loop_t) * 1e3:.1f} ms, batched best {min(batch_t) * 1e3:.1f} ms")
    print(f"ratio loop/batched: best-time {min(loop_t) / min(batch_t):.2f}, median {statistics.median(ratios):.2f}; "
          f"max relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
