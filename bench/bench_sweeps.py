"""Parallel speed-up of the sweep executors: wall time of the same work with `local` vs `process` (2 workers).

The work is the default claims audit (`bnlab.experiments.audit.run_audit`), or a sweep file with ``--sweep``.
Every run starts from an empty output folder (nothing cached), the two executors alternate (local, process,
process, local, ...) and the best of `--repeats` is kept for each, because the machine is shared. Wall time is
the right clock here: the point of `process` is to use more cores. Both executors run each trial with one torch
thread, so on 2 idle cores the ideal ratio is 2x; goal >= 1.6x. The script also checks that both executors
produced identical results (trial records, timing fields aside), so the speed-up is not bought with different
numbers.

Usage:
    python bench/bench_sweeps.py                                  # default audit, ~15 min per run on 2 cores
    python bench/bench_sweeps.py --scale smoke --repeats 3
    python bench/bench_sweeps.py --sweep sweeps/c07_learning_rate.toml --workers 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def audit_runner(scale: str, claims: str | None) -> Callable[[str, Path, int], None]:
    from bnlab.experiments.audit import run_audit

    def run(executor: str, out: Path, workers: int) -> None:
        run_audit(scale, None, claims, out, executor, workers=None if executor == "local" else workers,
                  log=None)

    return run


def sweep_runner(path: str) -> Callable[[str, Path, int], None]:
    from bnlab.sweeps.run import run_sweep
    from bnlab.sweeps.spec import load_sweep

    sweep = load_sweep(path)

    def run(executor: str, out: Path, workers: int) -> None:
        run_sweep(sweep, out=out, executor=executor, workers=None if executor == "local" else workers)

    return run


def trial_results(out: Path) -> dict[str, str]:
    """key -> the JSON text of its result: what must agree between executors."""
    found = {}
    # a sweep writes OUT/trials/<key>.json, the audit OUT/trials/<claim-hash>/<key>.json
    for path in sorted(p for p in out.rglob("*.json") if "trials" in p.relative_to(out).parts[:-1]):
        record = json.loads(path.read_text())
        found[record["key"]] = json.dumps([record["status"], record["result"]], sort_keys=True)
    return found


def compare(run: Callable[[str, Path, int], None], workers: int, repeats: int) -> dict[str, object]:
    times: dict[str, list[float]] = {"local": [], "process": []}
    results: dict[str, dict[str, str]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench_sweeps_"))
    try:
        for i in range(repeats):
            order = ("local", "process") if i % 2 == 0 else ("process", "local")
            for executor in order:
                out = root / f"{executor}-{i}"
                start = time.perf_counter()
                run(executor, out, workers)
                times[executor].append(time.perf_counter() - start)
                results.setdefault(executor, trial_results(out))
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not results.get("local"):
        raise SystemExit(f"no trial records found under the output folders of {root}: nothing to compare")
    local, process = min(times["local"]), min(times["process"])
    return {"local_s": local, "process_s": process, "ratio": local / process, "workers": workers,
            "trials": len(results["local"]), "identical": results["local"] == results["process"],
            "times": times}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default", choices=("smoke", "default", "paper"))
    parser.add_argument("--claims", default=None, help="comma-separated claim ids (default: all)")
    parser.add_argument("--sweep", default=None, help="time this sweep file instead of the audit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    run = sweep_runner(args.sweep) if args.sweep else audit_runner(args.scale, args.claims)
    what = f"sweep {args.sweep}" if args.sweep else f"audit --scale {args.scale}"
    report = compare(run, args.workers, args.repeats)
    print(f"{what}: {report['trials']} trials, best of {args.repeats}")
    print(f"  local:                 {report['local_s']:8.1f} s wall")
    print(f"  process ({args.workers} workers):   {report['process_s']:8.1f} s wall")
    print(f"  speed-up local/process: {report['ratio']:.2f}x (goal >= 1.6x on 2 cores)")
    print(f"  identical results:      {report['identical']}")
    return report


if __name__ == "__main__":
    main()
