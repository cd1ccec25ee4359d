"""The same 21x21 loss plane with bnlab, with loss-landscapes 3.0.6 and with a plain per-point loop.

Run: .venv/bin/python bench/bench_landscape.py [--steps 21] [--batch 512] [--shape 3,16,16] [--repeats 2]
                                               [--threads 1] [--compile] [--skip-51]

Setting: bnlab's narrow VGG (16-32-64 channels, torch BN) on one fixed batch, BN in train mode (batch statistics,
running statistics untouched) for every method. The peer's `planar_interpolation` is given the plane spanned by
bnlab's filter-normalised directions; because the peer shifts every other row by one step (issue 6), bnlab and the
per-point loop are evaluated at the coordinates the peer *actually* visited, so all three compute the same
441 values and the max difference between them is printed. Methods are timed interleaved, best of `--repeats`, in
CPU seconds of this process (`time.process_time`; with one thread that is the compute time, not the time spent
waiting for a core on a shared machine -- use `--wall` for wall-clock time with several threads).

Also printed: bnlab variants (NCHW instead of channels-last, vmap over points, bf16 with its error, torch.compile
with and without its compile time), the FLOPs of one forward (torch's FlopCounterMode) and bnlab's achieved
FLOP/s as a fraction of this machine's fp32 matmul rate (measured here, same thread count), and the wall and CPU
time of a 51x51 plane of the default CNN (narrow VGG on 1x8x8 digits-sized input, 512 samples, `bnlab landscape`'s
default). Goal (issue 6): bnlab >= 2x faster than loss-landscapes in fp32 at equal values; 51x51 in <= 60 s.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bnlab.landscape import evaluate_points, model_origin, random_directions, random_plane
from bnlab.models import build_model


def _bn_train_mode(model: nn.Module) -> nn.Module:
    """Every module in eval mode except BN, which uses batch statistics without updating running ones."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.track_running_stats = False
    return model


def _with_params(model: nn.Module, params: dict[str, torch.Tensor]) -> nn.Module:
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(params[n])
    return m


def peer_coordinates(steps: int, radius: float) -> np.ndarray:
    """(steps*steps, 2) coordinates loss-landscapes' planar_interpolation visits, in its output order."""
    h = 2 * radius / (steps - 1)
    pts = []
    for i in range(steps):
        for j in range(steps):
            jj = j + 1 if i % 2 == 0 else j  # even rows: add then evaluate (one step ahead); odd: back from the end
            pts.append((-radius + i * h, -radius + jj * h))
    return np.array(pts)


def run_peer(model, loss_fn, x, y, origin, dirs, steps, radius) -> np.ndarray:
    import loss_landscapes as ll
    from loss_landscapes.metrics import Loss

    h = 2 * radius / (steps - 1)
    start = {n: origin[n] - radius * dirs[0][n] - radius * dirs[1][n] for n in origin}
    end_one = {n: start[n] + steps * h * dirs[0][n] for n in origin}
    end_two = {n: start[n] + steps * h * dirs[1][n] for n in origin}
    m0 = _bn_train_mode(_with_params(model, start))
    m1, m2 = _with_params(model, end_one), _with_params(model, end_two)
    return ll.planar_interpolation(m0, m1, m2, Loss(loss_fn, x, y), steps=steps).ravel()


def run_loop(model, loss_fn, x, y, origin, dirs, coords) -> np.ndarray:
    """The obvious way: one model copy, write w in place, forward."""
    m = _bn_train_mode(copy.deepcopy(model))
    params = dict(m.named_parameters())
    out = []
    with torch.no_grad():
        for c1, c2 in coords:
            for n, p in params.items():
                p.copy_(origin[n] + c1 * dirs[0][n] + c2 * dirs[1][n])
            out.append(float(loss_fn(m(x), y)))
    return np.array(out)


def matmul_rate(clock, n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        torch.mm(a, b)
        best = min(best, clock() - t)
    return 2 * n**3 / best


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    m = _bn_train_mode(copy.deepcopy(model))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x)
    return int(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--shape", default="3,16,16")
    ap.add_argument("--radius", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="also time bnlab with torch.compile")
    ap.add_argument("--wall", action="store_true", help="time wall-clock instead of process CPU time")
    ap.add_argument("--skip-51", action="store_true", help="skip the 51x51 default-CNN plane")
    ap.add_argument("--model", default="vgg", choices=("vgg", "mlp"),
                    help="vgg: the narrow BN CNN (default); mlp: Ioffe's 3x100 BN MLP on 1x28x28 inputs, where the "
                    "first layer holds most FLOPs and bnlab's first-layer products apply")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.process_time
    shape = tuple(int(s) for s in args.shape.split(","))
    torch.manual_seed(0)
    if args.model == "mlp":
        shape = (1, 28, 28)
        model = build_model("mlp", norm="torch_bn", in_shape=shape, num_classes=10)
    else:
        model = build_model("vgg", config="narrow", norm="torch_bn", in_shape=shape, num_classes=10)
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()
    origin = model_origin(model)
    dirs = random_directions(origin, 2, seed=0)
    coords = peer_coordinates(args.steps, args.radius)
    n = len(coords)
    print(f"model={args.model} threads={args.threads} shape={shape} batch={args.batch} "
          f"plane={args.steps}x{args.steps} ({n} points), BN in train mode")

    methods = {
        "loss-landscapes 3.0.6": lambda: run_peer(model, loss_fn, x, y, origin, dirs, args.steps, args.radius),
        "per-point loop": lambda: run_loop(model, loss_fn, x, y, origin, dirs, coords),
        "bnlab (default)": lambda: evaluate_points(model, loss_fn, (x, y), origin, dirs, coords, "train")["loss"],
    }
    if args.model == "vgg":
        methods["bnlab NCHW"] = lambda: evaluate_points(model, loss_fn, (x, y), origin, dirs, coords, "train",
                                                        channels_last=False)["loss"]
    else:
        methods["bnlab w/o first-layer products"] = lambda: evaluate_points(
            model, loss_fn, (x, y), origin, dirs, coords, "train", linear_first_layer=False)["loss"]
    sub = coords[: max(8, args.steps)]
    partial = {  # timed on one row, reported per point
        "bnlab vmap (chunk 8)": lambda: evaluate_points(model, loss_fn, (x, y), origin, dirs, sub, "train",
                                                        strategy="vmap", chunk=8)["loss"],
        "bnlab bf16": lambda: evaluate_points(model, loss_fn, (x, y), origin, dirs, sub, "train",
                                              precision="bf16")["loss"],
    }
    best: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in {**methods, **partial}.items():
            t = clock()
            values[name] = fn()
            per_point = (clock() - t) / (len(sub) if name in partial else n)
            best[name] = min(best.get(name, float("inf")), per_point)
    if args.compile:
        t = time.perf_counter()  # wall: inductor may compile in worker processes
        evaluate_points(model, loss_fn, (x, y), origin, dirs, coords[:1], "train", compile=True)
        compile_s = time.perf_counter() - t
        t = clock()
        values["bnlab compiled"] = evaluate_points(model, loss_fn, (x, y), origin, dirs, coords, "train",
                                            compile=True)["loss"]
        best["bnlab compiled"] = (clock() - t) / n
        best["bnlab compiled + compile (wall)"] = best["bnlab compiled"] + compile_s / n

    ref = values["bnlab (default)"]
    peer = best["loss-landscapes 3.0.6"]
    print(f"\n{'method':32s} {'ms/point':>9s} {'peer/this':>10s} {'max |diff| vs bnlab':>20s}")
    for name, per_point in best.items():
        vals = values.get(name)
        diff = "" if vals is None else f"{np.max(np.abs(vals - ref[: len(vals)])):.2e}"
        print(f"{name:32s} {per_point * 1e3:9.2f} {peer / per_point:10.2f}x {diff:>20s}")
    flops = forward_flops(model, x)
    rate = matmul_rate(clock)
    achieved = flops / best["bnlab (default)"]
    print(f"\nforward FLOPs per point: {flops / 1e9:.3f} GFLOP; fp32 matmul rate here: {rate / 1e9:.1f} GFLOP/s "
          f"({args.threads} thread(s))")
    print(f"bnlab achieved {achieved / 1e9:.2f} GFLOP/s = {achieved / rate:.1%} of the matmul rate "
          f"(loss-landscapes {flops / peer / rate:.1%}, per-point loop {flops / best['per-point loop'] / rate:.1%})")
    print(f"RESULT speedup vs loss-landscapes (fp32, equal values): {peer / best['bnlab (default)']:.2f}x "
          f"(goal >= 2x)")

    if not args.skip_51:
        torch.manual_seed(0)
        cnn = build_model("vgg", config="narrow", norm="bn", in_shape=(1, 8, 8), num_classes=10)
        data = (torch.randn(512, 1, 8, 8), torch.randint(0, 10, (512,)))
        t, c = time.perf_counter(), time.process_time()
        random_plane(cnn, loss_fn, data, steps=51, seed=0, bn_mode="train")
        print(f"RESULT 51x51 plane, default CNN (narrow VGG, bnlab BN, 1x8x8, 512 samples): "
              f"{time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s CPU (goal <= 60 s)")


if __name__ == "__main__":
    main()
