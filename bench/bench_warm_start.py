"""Warm-started vs cold-started Lanczos for λ_max over a training run (issue: sharpness over training).

bnlab's narrow VGG with BN on sklearn digits, SGD lr 0.05, momentum 0.9, batch 64; every `--every` steps the top
Hessian eigenvalue on a fixed batch of 128 training examples in BN modes train and eval, once cold (seeded random
+ gradient start) and once warm (from the previous probe's eigenvector), same stopping rule (Ritz residual
≤ tol·|λ|). Both are checked against a tight reference (tol 1e-9) to 1e-3 relative; prints the Hessian-vector
products each used and the ratio cold / warm (> 1: warm cheaper).

    .venv/bin/python bench/bench_warm_start.py [--steps 300] [--every 25] [--tol 1e-3]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bnlab.data import load_dataset
from bnlab.models import build_model
from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--criterion", default="residual", choices=("residual", "eigenvalue"),
                    help="stopping rule of both runs: Ritz residual ≤ tol·|λ|, or the estimated eigenvalue error")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_dataset("digits")
    model = build_model("vgg", norm="bn", in_shape=data.in_shape, num_classes=data.num_classes, config="narrow")
    batch = (data.train_x[:128], data.train_y[:128])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(args.seed)
    previous: dict[str, torch.Tensor] = {}
    totals = {"cold": 0, "warm": 0}
    worst = 0.0
    for step in range(args.steps + 1):
        if step % args.every == 0:
            for mode in ("train", "eval"):
                with hessian_operator(model, F.cross_entropy, batch, bn_mode=mode) as op:
                    ref = lanczos_eigenpairs(op, tol=1e-9, max_steps=400, seed=99).eigenvalues[0]
                    cold = lanczos_eigenpairs(op, tol=args.tol, max_steps=200, seed=step, criterion=args.criterion)
                    start = previous.get(mode, "auto")
                    warm = lanczos_eigenpairs(op, tol=args.tol, max_steps=200, seed=step, start=start,
                                              criterion=args.criterion)
                previous[mode] = warm.eigenvectors
                errs = [abs(r.eigenvalues[0] - ref) / abs(ref) for r in (cold, warm)]
                worst = max(worst, *errs)
                if step > 0:  # the first probe has nothing to warm-start from
                    totals["cold"] += cold.products
                    totals["warm"] += warm.products
                print(f"step {step:4d} {mode:5s} λ_max {ref:10.5g}  cold {cold.products:3d} products "
                      f"(err {errs[0]:.1e})  warm {warm.products:3d} ({warm.info['start']}, err {errs[1]:.1e})")
        if step == args.steps:
            break
        model.train()
        idx = torch.randint(0, len(data.train_x), (64,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(data.train_x[idx]), data.train_y[idx]).backward()
        opt.step()
    print(f"total products after the first probe: cold {totals['cold']}, warm {totals['warm']}, ratio cold/warm "
          f"{totals['cold'] / max(totals['warm'], 1):.2f}x; worst relative error vs the reference {worst:.1e}")


if __name__ == "__main__":
    main()
