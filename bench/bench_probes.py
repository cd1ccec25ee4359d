"""Cost of bnlab's along-gradient and ICS probes, as ratios to plain training passes in the same process.

    .venv/bin/python bench/bench_probes.py [--batch 64] [--k 8] [--repeats 5] [--threads 1]

For the CPU VGG (`build_model("vgg", config="narrow")`, 3x32x32 inputs) it prints

* along-gradient probe time / (K x one forward+backward), for the loop and the vmap path (goal <= 1.15: the probe
  needs K+1 passes, so 1.125 is the floor for K = 8, up to timing noise), with torch's BatchNorm2d and with
  bnlab's BN (the vmap line is skipped when a layer cannot be traced by vmap);
* ICS probe time / one training step (forward + backward + SGD-with-momentum update); the probe needs one full
  pass plus one partial pass per weight layer, so expect about (layers + 1).

Timings are this process's CPU time (`time.process_time`, meant for `--threads 1`), interleaved, best of
`repeats`, so other processes on a shared machine disturb both sides alike. The ratios are what to compare, not
the seconds.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from bnlab.models import build_model
from bnlab.probes.along_gradient import along_gradient
from bnlab.probes.ics import ics


def _best(fns: dict, repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved
            t0 = time.process_time()  # CPU time of this (1-thread) process: robust to other processes' load
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.functional.cross_entropy
    etas = [0.1 * f for f in torch.linspace(0.5, 4.0, args.k).tolist()]
    print(f"VGG narrow, batch {args.batch}, K = {args.k}, threads {args.threads}, best of {args.repeats}")
    for norm in ("torch_bn", "bn"):
        model = build_model("vgg", norm=norm, config="narrow", in_shape=(3, 32, 32)).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def fwd_bwd(model=model):
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()

        def train_step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        train_step()  # momentum buffers exist, as mid-training
        fns = {"fwd_bwd": fwd_bwd, "train_step": train_step,
               "loop": lambda model=model: along_gradient(model, loss_fn, (x, y), etas, path="loop"),
               "ics": lambda model=model, opt=opt: ics(model, loss_fn, (x, y), opt)}
        try:
            along_gradient(model, loss_fn, (x, y), etas, path="vmap")
            fns["vmap"] = lambda model=model: along_gradient(model, loss_fn, (x, y), etas, path="vmap")
        except RuntimeError as exc:
            print(f"  [{norm}] vmap path unavailable: {str(exc).splitlines()[0][:100]}")
        for fn in fns.values():  # warm-up
            fn()
        t = _best(fns, args.repeats)
        n_layers = len(ics(model, loss_fn, (x, y), opt).layers)
        print(f"  [{norm}] one fwd+bwd {t['fwd_bwd'] * 1e3:.1f} ms, one train step {t['train_step'] * 1e3:.1f} ms")
        print(f"  [{norm}] along_gradient loop / (K x fwd+bwd) = {t['loop'] / (args.k * t['fwd_bwd']):.3f}")
        if "vmap" in t:
            print(f"  [{norm}] along_gradient vmap / (K x fwd+bwd) = {t['vmap'] / (args.k * t['fwd_bwd']):.3f}"
                  f"   (vmap / loop = {t['vmap'] / t['loop']:.2f})")
        print(f"  [{norm}] ics / one train step = {t['ics'] / t['train_step']:.2f} ({n_layers} weight layers)")


if __name__ == "__main__":
    main()
