"""Every Hessian eigenvalue above 2/η over a training run: warm-started, growing LOBPCG vs cold starts (issue 29).

The edge-of-stability setting of `bnlab sharpness` (Cohen et al. 2021): bnlab's tanh MLP (3 × 100) without BN on
500 sklearn digits, full-batch GD on ½-MSE at step size η, where progressive sharpening drives several Hessian
eigenvalues up to 2/η. Every `--every` steps, on the full batch (BN mode train where there is BN),
`bnlab.probes.hessian.tracked_spectrum.eigenvalues_above(op, threshold)` runs twice at the same tolerance:

* cold: a random block, k grown from 1 (what a tool without tracking pays at every probe);
* warm: the block starts from the previous probe's final block (eigenvectors above the threshold, the witness
  and the guard columns), k from its count.

Both answers are checked against each other (same count, every eigenvalue within 2·tol relative); the printout
gives per probe the count above the threshold and the products of each, and the totals' ratio cold / warm
(> 1: warm cheaper). The threshold is `--fraction` × 2/η (1.0: the edge itself).

    .venv/bin/python bench/bench_tracked_spectrum.py [--steps 1200] [--every 50] [--lr 0.04] [--tol 1e-3]
"""

from __future__ import annotations

import argparse

import torch

from bnlab.data import load_dataset
from bnlab.models import build_model
from bnlab.probes.hessian import hessian_operator
from bnlab.probes.hessian.tracked_spectrum import eigenvalues_above
from bnlab.workflows.sharpness_command import half_mse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.04)
    ap.add_argument("--fraction", type=float, default=1.0, help="threshold = fraction × 2/η")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--guard", type=int, default=2, help="extra LOBPCG block columns beyond count + 1")
    ap.add_argument("--norm", default="none", help="none | bn")
    ap.add_argument("--train-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_dataset("digits", train_size=args.train_size)
    model = build_model("mlp", norm=args.norm, in_shape=data.in_shape, num_classes=data.num_classes,
                        activation="tanh")
    x, y = data.train_x, data.train_y
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    threshold = args.fraction * 2 / args.lr
    previous = None
    totals = {"cold": 0, "warm": 0}
    print(f"tanh MLP norm={args.norm}, {sum(p.numel() for p in model.parameters())} parameters, GD on "
          f"{len(x)} digits, lr {args.lr} (2/η = {2 / args.lr:g}), threshold {threshold:g}, tol {args.tol}")
    for step in range(args.steps + 1):
        if step % args.every == 0:
            with hessian_operator(model, half_mse, (x, y), bn_mode="train") as op:
                cold = eigenvalues_above(op, threshold, tol=args.tol, seed=step, guard=args.guard)
                warm = eigenvalues_above(op, threshold, tol=args.tol, seed=step, start=previous,
                                         guard=args.guard)
            previous = warm
            agree = cold.count == warm.count and all(abs(a - b) <= 2 * args.tol * abs(a) for a, b in
                                                     zip(cold.eigenvalues, warm.eigenvalues))
            totals["cold"] += cold.products
            totals["warm"] += warm.products
            top = f"{warm.eigenvalues[0]:.4g}" if warm.eigenvalues else f"(witness {warm.witness:.4g})"
            print(f"step {step:5d}: {warm.count} above, top {top}; products cold {cold.products:4d} "
                  f"warm {warm.products:4d}; {'agree' if agree else 'DISAGREE'}"
                  + ("" if cold.converged and warm.converged else " (not converged)"))
        if step == args.steps:
            break
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
    print(f"total products: cold {totals['cold']}, warm {totals['warm']}, "
          f"ratio cold / warm = {totals['cold'] / max(totals['warm'], 1):.2f}x")


if __name__ == "__main__":
    main()
