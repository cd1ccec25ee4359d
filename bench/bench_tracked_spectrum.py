"""Every Hessian eigenvalue above 2/η over a training run: warm-started, growing LOBPCG vs cold starts (issue 29).

The edge-of-stability setting of `bnlab sharpness` (Cohen et al. 2021): bnlab's tanh MLP (3 × 100) without BN on
500 sklearn digits, full-batch GD on ½-MSE at step size η = 0.04. Progressive sharpening drives λ_max to 2/η = 50
near step 400; by step 1000 the top two, by step 2000 the top four eigenvalues hover at 2/η (0–3 above it at a
time). Every `--every` steps from `--first` on, on the full batch (BN mode train where there is BN),
`bnlab.probes.hessian.tracked_spectrum.eigenvalues_above(op, threshold)` runs twice at the same tolerance:

* cold: a random block, k grown from 1 (what a tool without tracking pays at every probe);
* warm: the tracker's call: the previous probe's block (eigenvectors above the threshold, the witness, one guard
  column), predicted one probe ahead when the backtest says so (`extrapolate`), k from its count.

A third count, for scale: bnlab's Lanczos (`lanczos_eigenpairs`, full reorthogonalisation, start random +
gradient, residual criterion, same tol) told the count in advance (k = the warm count + 1), which no cold start
knows: a lower bound on what a cold Lanczos pays. Not included in the ratio.

Both answers are checked against each other (same count, every eigenvalue within 2·tol relative); where they
disagree, a reference (Lanczos to 1e-8, k = the larger count + 2) decides which is right, and the printout says so.
The totals' ratio cold / warm (> 1: warm cheaper) is over every probe. The threshold is `--fraction` × 2/η.

    .venv/bin/python bench/bench_tracked_spectrum.py [--steps 3000] [--every 10] [--first 0] [--fraction 1.0]
"""

from __future__ import annotations

import argparse

import torch

from bnlab.data import load_dataset
from bnlab.models import build_model
from bnlab.probes.hessian import hessian_operator, lanczos_eigenpairs
from bnlab.probes.hessian.tracked_spectrum import eigenvalues_above
from bnlab.workflows.sharpness_command import half_mse


def _agree(a, b, tol: float) -> bool:
    return a.count == b.count and all(abs(x - y) <= 2 * tol * abs(x) for x, y in zip(a.eigenvalues, b.eigenvalues))


def _referee(op, cold, warm, threshold: float) -> tuple[str, list[str]]:
    """Which of two disagreeing answers a tight Lanczos reference sides with (by the count above the threshold):
    (a line to print, the names of those right)."""
    ref = lanczos_eigenpairs(op, k=max(cold.count, warm.count) + 2, tol=1e-8, max_steps=400, seed=12345)
    n = sum(v >= threshold for v in ref.eigenvalues)
    top = ", ".join(f"{v:.4f}" for v in ref.eigenvalues[: n + 1])
    right = [name for name, r in (("cold", cold), ("warm", warm)) if r.count == n]
    return f"reference ({top}): {n} above, right: {' and '.join(right) or 'neither'}", right


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--first", type=int, default=0, help="the first probe's step (GD steps before it unprobed)")
    ap.add_argument("--lr", type=float, default=0.04)
    ap.add_argument("--fraction", type=float, default=1.0, help="threshold = fraction × 2/η")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--guard", type=int, default=2, help="extra LOBPCG block columns beyond count + 1 (cold)")
    ap.add_argument("--warm-guard", type=int, default=1, help="guard columns of a warm start")
    ap.add_argument("--no-extrapolate", action="store_true", help="warm start from the previous block as it is")
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
    totals = {"cold": 0, "warm": 0, "lanczos": 0, "probes": 0, "disagree": 0, "cold wrong": 0, "warm wrong": 0,
              "extrapolated": 0}
    print(f"tanh MLP norm={args.norm}, {sum(p.numel() for p in model.parameters())} parameters, GD on "
          f"{len(x)} digits, lr {args.lr} (2/η = {2 / args.lr:g}), threshold {threshold:g}, tol {args.tol}")
    for step in range(args.steps + 1):
        if step >= args.first and (step - args.first) % args.every == 0:
            with hessian_operator(model, half_mse, (x, y), bn_mode="train") as op:
                cold = eigenvalues_above(op, threshold, tol=args.tol, seed=step, guard=args.guard)
                warm = eigenvalues_above(op, threshold, tol=args.tol, seed=step, start=previous, guard=args.guard,
                                         warm_guard=args.warm_guard, extrapolate=not args.no_extrapolate)
                told = lanczos_eigenpairs(op, k=warm.count + 1, tol=args.tol, seed=step)
                agree = _agree(cold, warm, args.tol)
                verdict, right = ("", ["cold", "warm"]) if agree else _referee(op, cold, warm, threshold)
            previous = warm
            for name, n in (("cold", cold.products), ("warm", warm.products), ("lanczos", told.products),
                            ("probes", 1), ("disagree", not agree), ("cold wrong", "cold" not in right),
                            ("warm wrong", "warm" not in right),
                            ("extrapolated", warm.info["extrapolated"])):
                totals[name] += int(n)
            top = f"{warm.eigenvalues[0]:.4g}" if warm.eigenvalues else f"(witness {warm.witness:.4g})"
            print(f"step {step:5d}: {warm.count} above, top {top}; products cold {cold.products:4d} "
                  f"warm {warm.products:4d} (Lanczos told the count {told.products:3d})"
                  f"{'' if agree else '; DISAGREE; ' + verdict}"
                  + ("" if cold.converged and warm.converged else " (not converged)"))
        if step == args.steps:
            break
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
    print(f"{totals['probes']} probes, warm extrapolated at {totals['extrapolated']}; disagreements "
          f"{totals['disagree']} (cold wrong {totals['cold wrong']}, warm wrong {totals['warm wrong']})")
    print(f"total products: cold {totals['cold']}, warm {totals['warm']}, ratio cold / warm = "
          f"{totals['cold'] / max(totals['warm'], 1):.2f}x; Lanczos told the count {totals['lanczos']} "
          f"({totals['lanczos'] / max(totals['warm'], 1):.2f}x warm)")


if __name__ == "__main__":
    main()
