"""Engine overhead: steps/s of `bnlab.train.train` / steps/s of a bare hand-written PyTorch loop.

Same model (copied from one initial state), same data and batch size, one thread, CPU time (process_time:
less sensitive to other processes than wall time), interleaved repeats, best of
each (the machine is shared, so only same-process ratios mean anything). Two bare peers:

* ``bare+iterator``: the textbook loop fed by the same `BatchIterator` -- the ratio isolates the engine's own
  per-step cost (loss bookkeeping, schedules, divergence check). Goal >= 0.95.
* ``bare+indexing``: the textbook loop drawing a random index batch `x[idx]` every step, as most scripts do.

The engine's evaluation (start and end) runs on 60 examples so it does not dominate; model construction is
outside both timings. Usage: ``python bench/bench_train.py [--steps 400] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from bnlab.data import BatchIterator, load_dataset
from bnlab.models import build_model
from bnlab.train import TrainConfig, train


def bare_loop(model, data, steps: int, batch_size: int, lr: float, iterator: bool) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    batches = BatchIterator(data.train_x, data.train_y, batch_size, gen)
    n = len(data.train_x)
    t0 = time.process_time()
    for _ in range(steps):
        if iterator:
            x, y = next(batches)
        else:
            idx = torch.randint(0, n, (batch_size,), generator=gen)
            x, y = data.train_x[idx], data.train_y[idx]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
    return steps / (time.process_time() - t0)


def engine(model, data, steps: int, batch_size: int, lr: float, norm: str) -> float:
    cfg = TrainConfig(model="mlp", norm=norm, dataset=data.name, steps=steps, batch_size=batch_size, lr=lr,
                      momentum=0.9, eval_every=0, eval_train_size=60, progress=False, device="cpu")
    t0 = time.process_time()
    train(cfg, model=model, dataset=data)
    return steps / (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist5k", test_size=60)
    for norm in ("none", "torch_bn", "bn"):
        torch.manual_seed(0)
        initial = build_model("mlp", norm=norm)
        best = {"engine": 0.0, "bare+iterator": 0.0, "bare+indexing": 0.0}
        engine(copy.deepcopy(initial), data, 50, 60, 0.1, norm)  # warm-up (lazy imports, allocator)
        for _ in range(args.repeats):
            best["engine"] = max(best["engine"], engine(copy.deepcopy(initial), data, args.steps, 60, 0.1, norm))
            best["bare+iterator"] = max(best["bare+iterator"],
                                        bare_loop(copy.deepcopy(initial), data, args.steps, 60, 0.1, True))
            best["bare+indexing"] = max(best["bare+indexing"],
                                        bare_loop(copy.deepcopy(initial), data, args.steps, 60, 0.1, False))
        print(f"mlp/{norm:8s} batch 60: engine {best['engine']:7.0f} steps/s | bare+iterator "
              f"{best['bare+iterator']:7.0f} | bare+indexing {best['bare+indexing']:7.0f} | "
              f"ratio engine/bare+iterator {best['engine'] / best['bare+iterator']:.3f} (goal >= 0.95) | "
              f"engine/bare+indexing {best['engine'] / best['bare+indexing']:.3f}")


if __name__ == "__main__":
    main()
