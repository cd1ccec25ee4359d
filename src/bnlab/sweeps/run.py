"""Running a sweep file: expand, execute into the sweep folder, summarise into a table.

`run_sweep(sweep, out=..., executor="process")` writes, under `out`:

* ``trials/<key>.json`` -- the `TrialStore`: one record per trial, written the moment it ends; a rerun (after
  Ctrl-C, a SIGKILL, a lost node) recomputes only what is missing or failed;
* ``sweep.json``        -- the validated sweep (base, axes, seeds) and its trial keys;
* ``results.json``      -- one row per point of the axes, aggregated over seeds (`summarize`), plus every record's
  status, written atomically at the end.

`ProgressPrinter` is the live progress line the CLI prints per finished trial; `format_table` the final table.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bnlab.atomic import write_json
from bnlab.folders import check_out_folder, claim_out_folder
from bnlab.sweeps.executors import ProgressEvent, get_executor
from bnlab.sweeps.spec import Sweep, expand, point_label
from bnlab.sweeps.store import TrialStore
from bnlab.sweeps.trial import Trial

METRICS: tuple[str, ...] = ("test_acc", "test_loss", "train_loss")


@dataclass
class SweepRun:
    sweep: Sweep
    out: Path
    trials: list[Trial]
    records: dict[str, dict[str, Any]]  # Trial.key() -> store record
    rows: list[dict[str, Any]]


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, sd


def summarize(sweep: Sweep, trials: Sequence[Trial], records: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per axes point: trial counts (ok / failed / diverged) and mean, sd over seeds of the final
    metrics of the runs that did not diverge (a diverged run has no meaningful final accuracy; it is counted)."""
    by_point: dict[str, list[dict[str, Any]]] = {}
    points = {point_label(p): p for p in sweep.points()}
    for trial in trials:
        label = trial.name.rsplit("/seed=", 1)[0] if "/seed=" in trial.name else ""
        by_point.setdefault(label, []).append(records[trial.key()])
    rows = []
    for label, point in points.items():
        recs = by_point.get(label, [])
        ok = [r for r in recs if r["status"] == "ok"]
        stable = [r for r in ok if r["result"].get("diverged_at_step") is None]
        row: dict[str, Any] = {"point": dict(point), "trials": len(recs), "ok": len(ok),
                               "failed": len(recs) - len(ok), "diverged": len(ok) - len(stable)}
        for metric in METRICS:
            mean, sd = _mean_sd([r["result"]["final"].get(metric, math.nan) for r in stable])
            row[metric] = {"mean": mean, "sd": sd, "n": len(stable)}
        if sweep.target_acc is not None:
            reached = [r["result"]["steps_to_target"] for r in ok if r["result"].get("steps_to_target") is not None]
            mean, sd = _mean_sd(reached)
            row["steps_to_target"] = {"mean": mean, "sd": sd, "reached": len(reached), "n": len(ok)}
        rows.append(row)
    return rows


def best_rows(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each setting of the axes other than `sweep.best_over`, the row with the best value of that axis.

    Best = fewest mean steps to `target_acc` among rows where every seed reached it (when a target is set),
    otherwise (or when no row reached it) the highest mean final test accuracy among rows with a stable run.
    Returns [{"setting": {...}, "best": {axis: value} | None, "row": row | None, "by": "steps_to_target" |
    "test_acc"}]."""
    axis = sweep.best_over
    if axis is None:
        return []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for row in rows:
        setting = {k: v for k, v in row["point"].items() if k != axis}
        label = point_label(setting)
        groups.setdefault(label, []).append(row)
        settings[label] = setting
    out = []
    for label, group in groups.items():
        by = "test_acc"
        best = None
        if sweep.target_acc is not None:
            full = [r for r in group if r["steps_to_target"]["n"] > 0
                    and r["steps_to_target"]["reached"] == r["steps_to_target"]["n"]]
            if full:
                best, by = min(full, key=lambda r: r["steps_to_target"]["mean"]), "steps_to_target"
        if best is None:
            scored = [r for r in group if r["test_acc"]["mean"] is not None]
            best = max(scored, key=lambda r: r["test_acc"]["mean"]) if scored else None
        out.append({"setting": settings[label], "best": None if best is None else {axis: best["point"][axis]},
                    "row": best, "by": by})
    return out


def _cell(stat: Mapping[str, Any], digits: int) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def format_table(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table: axes, ok/failed/diverged counts, final metrics mean ± sd over seeds."""
    axes = [k for k, _ in sweep.axes]
    header = [*axes, "ok", "failed", "diverged", "test_acc", "test_loss"]
    if sweep.target_acc is not None:
        header += [f"steps to acc {sweep.target_acc:g}"]
    body = []
    for row in rows:
        line = [str(row["point"][k]) for k in axes]
        line += [f"{row['ok']}/{row['trials']}", str(row["failed"]), str(row["diverged"]),
                 _cell(row["test_acc"], 4), _cell(row["test_loss"], 4)]
        if sweep.target_acc is not None:
            st = row["steps_to_target"]
            line.append(f"{_cell(st, 0)} ({st['reached']}/{st['n']})")
        body.append(line)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in body]
    for entry in best_rows(sweep, rows):
        where = point_label(entry["setting"]) or "all"
        if entry["row"] is None:
            lines.append(f"best {sweep.best_over} for {where}: none (no stable run)")
            continue
        row, value = entry["row"], entry["best"][sweep.best_over]
        what = (f"{_cell(row['steps_to_target'], 0)} steps to acc {sweep.target_acc:g}"
                if entry["by"] == "steps_to_target" else f"test_acc {_cell(row['test_acc'], 4)}")
        lines.append(f"best {sweep.best_over} for {where}: {value} ({what})")
    return "\n".join(lines)


class ProgressPrinter:
    """Live progress: one line per computed trial -- count, status, name, its time, elapsed, failures so far;
    trials already in the store are summed up in one line."""

    def __init__(self, stream: TextIO | None = None, header: str | None = None) -> None:
        self.stream = stream or sys.stderr
        self.header = header  # printed before the first line, i.e. once the run has really started
        self.start = time.perf_counter()
        self.failed = 0
        self.cached = 0

    def __call__(self, event: ProgressEvent) -> None:
        done, total, trial, record = event
        if event.cached:
            self.cached += 1
            if done == total:
                self._write(f"[{done}/{total}] all {self.cached} trials already in the store")
            return
        if self.cached:
            self._write(f"[{self.cached}/{total}] {self.cached} trials already in the store")
            self.cached = 0
        self.failed += record["status"] == "failed"
        elapsed = time.perf_counter() - self.start
        extra = f"  ({self.failed} failed so far)" if self.failed else ""
        note = f"  error: {record['error']}" if record["status"] == "failed" else ""
        if record["status"] == "ok" and isinstance(record["result"].get("diverged_at_step"), int):
            note = f"  diverged at step {record['result']['diverged_at_step']}"
        self._write(f"[{done:>{len(str(total))}}/{total}] {record['status']:<6} {trial.name}  "
                    f"{record['duration_s']:.1f} s  elapsed {elapsed:.0f} s{extra}{note}")

    def _write(self, line: str) -> None:
        if self.header is not None:
            self.stream.write(self.header + "\n")
            self.header = None
        self.stream.write(line + "\n")
        self.stream.flush()


def run_sweep(sweep: Sweep, *, out: str | Path | None = None, executor: str = "local",
              workers: int | None = None, address: str | None = None, retries: int = 1,
              gpus_per_trial: float = 0, progress: Any = None, force: bool = False) -> SweepRun:
    """Expand `sweep`, run what the folder does not already hold, write results.json; see the module docstring.
    The folder (default runs/sweeps/<name>) must be empty or a sweep's (`bnlab.folders.claim_out_folder`), unless
    `force`."""
    folder = check_out_folder(out if out is not None else Path("runs") / "sweeps" / sweep.name)
    runner = get_executor(executor, workers=workers, address=address, retries=retries,
                          gpus_per_trial=gpus_per_trial)
    claim_out_folder(folder, "sweep", force=force)
    store = TrialStore(folder / "trials")
    trials = expand(sweep)
    write_json(folder / "sweep.json", {
        "name": sweep.name, "claim": sweep.claim, "description": sweep.description, "base": dict(sweep.base),
        "axes": {k: list(v) for k, v in sweep.axes}, "seeds": list(sweep.seeds),
        "curve_points": sweep.curve_points, "target_acc": sweep.target_acc, "best_over": sweep.best_over,
        "trials": {t.name: t.key() for t in trials}})
    if progress is not None and hasattr(progress, "expect"):  # a ProgressBar: the cost still to run, for its estimate
        unique = {t.key(): t for t in trials}
        progress.expect(list(unique.values()), {k for k in unique if store.done(k)})
    records = runner.run(trials, store, progress=progress)
    if progress is not None and hasattr(progress, "close"):
        progress.close()
    rows = summarize(sweep, trials, records)
    write_json(folder / "results.json", {
        "name": sweep.name, "claim": sweep.claim, "executor": executor, "rows": rows,
        "best": best_rows(sweep, rows),
        "trials": [{"name": t.name, "key": t.key(), "status": records[t.key()]["status"],
                    "attempts": records[t.key()]["attempts"], "error": records[t.key()]["error"],
                    "duration_s": records[t.key()]["duration_s"]} for t in trials]})
    return SweepRun(sweep, folder, trials, records, rows)
