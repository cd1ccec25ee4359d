"""What bounds the top-eigenvalue ratio against PyHessian: graph build and product costs, and per tolerance and seed
the products each tool spends and the value it returns (issue 29, item 4).

Same model and batch as `bench_hessian.py` (narrow VGG with torch BN on digits, batch 256, BN mode eval, 1 thread,
process CPU time): the time to build bnlab's Hessian operator (forward + backward with create_graph) and one
Hessian-vector product; then for tol 1e-2, 1e-3, 1e-4 and 3 seeds, bnlab's Lanczos (starts auto / gradient /
random, rules eigenvalue / residual) and PyHessian's power iteration (its products counted by wrapping
`pyhessian.hessian.hessian_vector_product`), against a reference λ_max (Lanczos, tol 1e-9). A value more than 1e-3
off the reference is marked WRONG (e.g. the gradient start stopping on the second eigenvalue).

    .venv/bin/python bench/bench_hessian_products.py [--train-steps 600]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from bnlab.probes.hessian import hessian_operator, top_eigenvalues

sys.path.insert(0, str(Path(__file__).parent))
from bench_hessian import pyhessian_top, trained_model  # noqa: E402 (the sibling bench's model and peer call)

TOLS = (1e-2, 1e-3, 1e-4)


def cpu_time(fn):  # -> (seconds, result)
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def build_and_product(model, batch, repeats: int = 3) -> tuple[float, float]:
    """(best build seconds, best seconds per product) of bnlab's operator in BN mode eval."""
    builds, products = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        with hessian_operator(model, F.cross_entropy, batch, bn_mode="eval") as op:
            t1 = time.process_time()
            v = torch.randn(op.dim, 1)
            for _ in range(5):
                op.matvec(v)
            products.append((time.process_time() - t1) / 5)
        builds.append(t1 - t0)
    return min(builds), min(products)


def counted_pyhessian(model, batch, tol: float, seed: int) -> tuple[float, int, float]:
    """PyHessian's top eigenvalue with its Hessian-vector products counted: (value, products, seconds)."""
    module = sys.modules["pyhessian.hessian"]
    original, calls = module.hessian_vector_product, [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    module.hessian_vector_product = counting
    try:
        seconds, value = cpu_time(lambda: pyhessian_top(model, batch, tol, seed))
    finally:
        module.hessian_vector_product = original
    return value, calls[0], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import pyhessian  # noqa: F401 (registers pyhessian.hessian in sys.modules)

    model, data = trained_model(args.train_steps, 0)
    batch = (data.train_x[:256], data.train_y[:256])
    ref = top_eigenvalues(model, F.cross_entropy, batch, bn_mode="eval", tol=1e-9, max_steps=300, seed=99)
    lam = ref.eigenvalues[0]
    build, product = build_and_product(model, batch)
    print(f"after {args.train_steps} SGD steps: reference λ_max {lam:.6f}; bnlab operator build {build * 1e3:.1f} ms, "
          f"one product {product * 1e3:.1f} ms (best of 3, process CPU time)")

    def mark(value: float) -> str:
        return "" if abs(value - lam) <= 1e-3 * abs(lam) else "  WRONG"

    for start in ("auto", "gradient", "random"):
        for criterion in ("eigenvalue", "residual"):
            for tol in TOLS:
                for seed in range(args.seeds):
                    kwargs = {"bn_mode": "eval", "tol": tol, "seed": seed, "criterion": criterion, "start": start}
                    seconds, res = cpu_time(lambda kw=kwargs: top_eigenvalues(model, F.cross_entropy, batch, **kw))
                    value = res.eigenvalues[0]
                    print(f"bnlab start {start:6s} ({res.info['start']:8s}) {criterion:10s} tol {tol:g} seed {seed}: "
                          f"{value:.6f} in {res.products:2d} products, {seconds:.3f} s{mark(value)}")
    for tol in TOLS:
        for seed in range(args.seeds):
            value, products, seconds = counted_pyhessian(model, batch, tol, seed)
            print(f"PyHessian power iteration tol {tol:g} seed {seed}: {value:.6f} in {products:2d} products, "
                  f"{seconds:.3f} s{mark(value)}")


if __name__ == "__main__":
    main()
