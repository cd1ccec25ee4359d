"""Paper-scale check on one GPU in under 10 minutes: the Santurkar VGG/CIFAR-10 sweep, shortened.

What it checks, on the machine it runs on:

1. the device is chosen per trial: every trial of the sweep reports ``device == "cuda"`` (``device = "auto"`` in
   the sweep file; with the ``ray`` executor each task reserves a fraction of the GPU and Ray exposes it);
2. the paper's sweep file runs end to end through an executor: ``sweeps/paper_santurkar_vgg_cifar10.toml`` with
   its axes (norm x lr) and model (vgg11, batch 128), only `--steps` instead of 15k and one seed;
3. the runs make sense: finite curves or a recorded divergence; with BN at lr 0.1 the training loss falls;
4. how long the full paper sweep would take: each trial's steps/s, extrapolated to 30 trials x 15k steps.

Data: the real CIFAR-10 with ``--data-dir``; without it a synthetic CIFAR-10-shaped folder (python format, 10
classes = 10 fixed random images + noise, so it is learnable) is written to a temporary folder, which is enough
for the device, throughput and plumbing checks (not for the paper's accuracy numbers).

Usage (one GPU, about 3-6 minutes):
    python bench/gpu_paper_check.py                       # ray if installed, else local
    python bench/gpu_paper_check.py --data-dir ~/data/cifar-10-batches-py --steps 1000
The result summary is also written as JSON to ``--out``/gpu_check.json. Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAPER_SWEEP = ROOT / "sweeps" / "paper_santurkar_vgg_cifar10.toml"


def write_fake_cifar10(folder: Path, train: int, test: int, seed: int = 0) -> Path:
    """A learnable CIFAR-10-shaped folder in the python format: class c = template_c + noise, uint8."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 3072)).astype(np.float32)  # (10, 3*32*32)
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict[bytes, object]:
        labels = rng.integers(0, 10, size=n)
        data = 0.5 * templates[labels] + rng.normal(0, 48, size=(n, 3072)) + 64  # (n, 3072)
        return {b"data": np.clip(data, 0, 255).astype(np.uint8), b"labels": labels.tolist()}

    per = max(1, train // 5)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test)))
    return folder


def build_sweep(steps: int, data_dir: str, config: str, batch_size: int, seeds: int):
    """The paper sweep file with its length and seeds shortened (everything else as written)."""
    import tomllib

    from bnlab.sweeps.spec import parse_sweep

    data = tomllib.loads(PAPER_SWEEP.read_text())
    data["name"] = "gpu-paper-check"
    data["seeds"] = seeds
    data["curve_points"] = 50
    base = data["base"]
    base.update(steps=steps, eval_every=max(1, steps // 4), data_dir=data_dir, batch_size=batch_size,
                eval_train_size=min(base.get("eval_train_size", 1000), 2000))
    base["model_kwargs"] = {**base.get("model_kwargs", {}), "config": config}
    return parse_sweep(data)


def check_records(result, cuda: bool) -> tuple[list[str], list[float]]:
    """Checks 1 and 3 of the module docstring over a finished `SweepRun`; returns (failures, steps/s per trial).

    steps/s is steps done / the trial's wall time, evaluation and data loading included (a conservative rate)."""
    failures: list[str] = []
    rates = []
    want = "cuda" if cuda else "cpu"
    for trial in result.trials:
        record = result.records[trial.key()]
        if record["status"] != "ok":
            failures.append(f"{trial.name}: {record['error']}")
            continue
        res = record["result"]
        if res["device"] != want:
            failures.append(f"{trial.name}: ran on {res['device']}, expected {want}")
        losses = res["curves"]["train_loss"]
        if res["diverged_at_step"] is None and not all(math.isfinite(v) for v in losses):
            failures.append(f"{trial.name}: non-finite loss without a recorded divergence")
        rates.append(res["final"].get("steps_done", 0) / max(record["duration_s"], 1e-9))
        if "norm=bn/lr=0.1/" in trial.name and res["diverged_at_step"] is None:
            quarter = max(1, len(losses) // 4)
            first, last = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
            if not last < first:
                failures.append(f"{trial.name}: BN at lr 0.1 did not reduce the training loss "
                                f"(first quarter {first:.3f}, last quarter {last:.3f})")
        elif "norm=bn/lr=0.1/" in trial.name:
            failures.append(f"{trial.name}: BN at lr 0.1 diverged at step {res['diverged_at_step']}")
    return failures, rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="real CIFAR-10 (python format); default: synthetic")
    parser.add_argument("--steps", type=int, default=600, help="steps per trial (the paper: 15000)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--executor", default=None, choices=("local", "process", "ray"),
                        help="default: ray when installed, else local")
    parser.add_argument("--gpus-per-trial", type=float, default=0.5, help="ray only: GPU share per trial")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (to test this script)")
    parser.add_argument("--config", default=None, help="VGG config override (tests: narrow)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fake-train", type=int, default=50000)
    parser.add_argument("--fake-test", type=int, default=10000)
    args = parser.parse_args(argv)

    import torch

    from bnlab.sweeps.run import format_table, run_sweep

    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}")
    if not cuda and not args.allow_cpu:
        print("FAIL: no CUDA device (pass --allow-cpu to run the plumbing on CPU)")
        return 1
    executor = args.executor
    if executor is None:
        try:
            import ray  # noqa: F401

            executor = "ray"
        except ImportError:
            executor = "local"
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_paper_check_"))
    start = time.perf_counter()
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = str(write_fake_cifar10(out / "fake-cifar-10-batches-py", args.fake_train, args.fake_test))
        print(f"synthetic CIFAR-10-shaped data: {args.fake_train} train / {args.fake_test} test images")
    import tomllib

    paper = tomllib.loads(PAPER_SWEEP.read_text())
    config = args.config or paper["base"]["model_kwargs"]["config"]
    sweep = build_sweep(args.steps, data_dir, config, args.batch_size, args.seeds)
    gpus = args.gpus_per_trial if executor == "ray" and cuda else 0
    print(f"sweep: {len(sweep)} trials of {args.steps} steps, vgg {config}, batch {args.batch_size}, "
          f"executor {executor}" + (f", {gpus} GPU per trial" if gpus else ""))
    result = run_sweep(sweep, out=out / "sweep", executor=executor, gpus_per_trial=gpus,
                       progress=lambda e: print(f"  [{e.done}/{e.total}] {e.record['status']} {e.trial.name} "
                                                f"{e.record['duration_s']:.1f} s", flush=True))
    print(format_table(sweep, result.rows))

    failures, rates = check_records(result, cuda)
    # the full paper sweep: 30 trials x 15k steps, at the measured mean rate (trials sharing the GPU included)
    mean_rate = sum(rates) / len(rates) if rates else float("nan")
    paper_trials = 2 * 3 * paper["seeds"]
    paper_steps = paper["base"]["steps"]
    per_trial_h = paper_steps / mean_rate / 3600 if rates else float("nan")
    summary = {
        "cuda": cuda, "device_name": torch.cuda.get_device_name(0) if cuda else "cpu", "executor": executor,
        "gpus_per_trial": gpus, "trials": len(result.trials), "steps": args.steps, "config": config,
        "mean_steps_per_s_per_trial": mean_rate, "paper_trials": paper_trials,
        "paper_hours_per_trial": per_trial_h,
        "paper_hours_one_gpu_sequential_equiv": per_trial_h * paper_trials * (gpus or 1),
        "wall_s": time.perf_counter() - start, "failures": failures,
    }
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    print(f"mean {mean_rate:.1f} steps/s per trial; the paper sweep ({paper_trials} trials x {paper_steps} steps) "
          f"needs about {summary['paper_hours_one_gpu_sequential_equiv']:.2f} GPU-hours at this rate")
    print(f"wall {summary['wall_s']:.0f} s; results in {out}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
