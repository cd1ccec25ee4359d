"""The claims audit: plan every claim's trials, run them once through a sweep executor, summarise, report.

    run_audit(scale, seeds, claims, out, executor, first_seed=0) -> AuditResult

1. **Validate** every input (scale, seeds, claim ids, executor, output folder, data folder) before touching the
   output folder: bad input raises `BnlabError` and nothing is written.
2. **Plan**: each claim's experiment module (`registry.load_experiment`) turns (scale, seeds, first seed) into a
   `Plan` (seeds None: the claim's default for the scale, `experiments.base.DEFAULT_SEEDS`; the seeds run are
   first_seed ... first_seed + n - 1, so `--first-seed` replicates an audit on disjoint seeds). A claim
   without a module is `not_measured` — never a guess; one whose module fails to import or to plan is recorded as
   `inconclusive` with the error in its caveats, and the others go on.
3. **Run**: the trials of all claims, with the data folder bound into each trial that reads one
   (`bnlab.sweeps.trial.bind_data`), deduplicated by `Trial.key()` (two claims may share a trial), go through
   `bnlab.sweeps.get_executor(executor)` into the trial store ``OUT/trials/`` (one atomic JSON file per trial).
   Finished trials are never recomputed, so a rerun reuses them and a run killed half way resumes where it
   stopped. The key covers the data (folder and content fingerprint) and the code that computes the trial
   (`bnlab.sweeps.trial.code_fingerprint`), so no result computed on other data or by other code is reused.
4. **Summarise**: `experiments.base.summarize(module, plan, results)` = the module's `measure`, `decide` (its
   verdict by the rule written in the module), `figures` and `describe`. A claim with a failed trial, or whose
   summary raises, is `inconclusive` with the errors in its caveats.
5. **Write** ``OUT/results.json`` atomically, then the report (figures/, report.html, report.md).

Determinism: everything under ``"claims"`` in results.json is a function of the code, the data, the scale and the seeds
only — no timestamps, durations, paths or cache state (those live at the top level) — so two runs with the same
seeds give bit-identical claims.

Side effects: creates OUT, OUT/trials/ and the report files.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnlab import results as results_schema
from bnlab.atomic import write_json
from bnlab.config import config_hash, plain
from bnlab.data.registry import STAND_INS, datasets_of
from bnlab.errors import BnlabError
from bnlab.experiments import base
from bnlab.experiments.base import SCALES, ClaimResult, Plan
from bnlab.experiments.claims import CLAIMS
from bnlab.experiments.registry import CLAIM_MODULES, load_experiment
from bnlab.folders import check_out_folder, claim_out_folder
from bnlab.report.build import write_report
from bnlab.report.figures import figure_filename
from bnlab.results import CLAIM_IDS, VERDICTS
from bnlab.sweeps import EXECUTORS, TrialStore, get_executor
from bnlab.sweeps.executors.executor import describe_error
from bnlab.sweeps.trial import Trial, bind_data

RESULTS_FILE = "results.json"
TRIALS_DIR = "trials"
MAX_ERRORS_SHOWN = 5

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ validation


def parse_claims(claims: str | Sequence[str] | None) -> tuple[str, ...]:
    """Claim ids from "C07,C13" (or a list); case-insensitive, "7" means C07; all claims when None or empty."""
    if claims is None:
        return CLAIM_IDS
    items = claims.split(",") if isinstance(claims, str) else list(claims)
    chosen: list[str] = []
    for item in items:
        text = str(item).strip().upper()
        if not text:
            continue
        if text.isdigit():
            text = f"C{int(text):02d}"
        if text not in CLAIM_IDS:
            raise BnlabError(f"unknown claim id {str(item).strip()!r} (known: C01..C14)")
        if text not in chosen:
            chosen.append(text)
    if not chosen:
        raise BnlabError("--claims names no claim (e.g. --claims C07,C13)")
    return tuple(c for c in CLAIM_IDS if c in chosen)


@dataclass(frozen=True)
class AuditRequest:
    """A validated audit request (see `validate_request`)."""

    scale: str
    seeds: int | None  # None: each claim's default for the scale (experiments.base.DEFAULT_SEEDS)
    claims: tuple[str, ...]
    out: Path
    executor: str
    workers: int | None = None
    address: str | None = None
    data_dir: Path | None = None
    first_seed: int = 0
    force: bool = False  # write over a folder this command did not write (--force)


def validate_request(scale: str = "default", seeds: int | None = None,
                     claims: str | Sequence[str] | None = None, out: str | os.PathLike = "runs/audit",
                     executor: str = "process", workers: int | None = None, address: str | None = None,
                     data_dir: str | os.PathLike | None = None, first_seed: int = 0,
                     force: bool = False) -> AuditRequest:
    """Check every input of an audit, touching nothing; BnlabError naming the first problem."""
    if scale not in SCALES:
        raise BnlabError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise BnlabError(f"seeds must be an integer >= 1, got {seeds!r}")
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise BnlabError(f"first seed must be an integer >= 0, got {first_seed!r}")
    chosen = parse_claims(claims)
    if executor not in EXECUTORS:
        raise BnlabError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BnlabError(f"workers must be an integer >= 1, got {workers!r}")
    if address is not None and executor != "ray":
        raise BnlabError(f"--address is for the ray executor, not {executor!r}")
    if executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise BnlabError('the ray executor needs Ray: pip install "bnlab[ray]"')
    data = None
    if data_dir is not None:
        data = Path(data_dir).expanduser()
        if not data.is_dir():
            raise BnlabError(f"data folder {str(data)!r} does not exist or is not a folder")
    return AuditRequest(scale, seeds, chosen, check_out_folder(out), executor, workers, address, data, first_seed,
                        force)


# ------------------------------------------------------------------------------------------------ claim state


@dataclass
class _Claim:
    """Book-keeping of one claim during the audit."""

    id: str
    module: Any = None
    plan: Plan | None = None
    entry: dict[str, Any] | None = None  # set once the claim's result is final
    failure: str | None = None
    look: base.Look | None = None  # the sequential plan's look of this stage (None: fixed n, --seeds N)
    frozen: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> the vote decided at a look
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # setting -> every look's numbers


@dataclass
class AuditResult:
    """What `run_audit` produced: the results (as written to results.json) and where the files are."""

    results: dict[str, Any]
    out: Path
    results_path: Path
    report_html: Path
    report_md: Path
    figure_errors: tuple[str, ...] = ()
    trial_counts: dict[str, int] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    return describe_error(exc)


def _about(claim_id: str) -> dict[str, Any]:
    info = CLAIMS[claim_id].to_dict()
    return {k: info[k] for k in ("statement", "how_tested", "reference", "references")}


def _entry(claim_id: str, verdict: str, summary: str, *, rule: str = "", caveats: Sequence[str] = (),
           config_hash: str | None = None, n_trials: int = 0, seeds: Sequence[int] = ()) -> dict[str, Any]:
    """A claim entry that did not come from summarize(): not measured, or failed."""
    return results_schema.claim_entry(claim_id, CLAIMS[claim_id].title, verdict, summary, rule=rule,
                                      caveats=caveats, config_hash=config_hash, n_trials=n_trials, seeds=seeds,
                                      about=_about(claim_id))


def _failed(claim_id: str, what: str, error: str, **kw: Any) -> dict[str, Any]:
    return _entry(claim_id, "inconclusive", f"The experiment could not decide: {what}.",
                  caveats=[f"{what}: {error}"], **kw)


def _check_plan(claim_id: str, plan: Any) -> Plan:
    if not isinstance(plan, Plan):
        raise TypeError(f"plan() returned {type(plan).__name__}, expected experiments.base.Plan")
    if plan.claim != claim_id:
        raise ValueError(f"plan() is for claim {plan.claim!r}, expected {claim_id!r}")
    names = set()
    for t in plan.trials:
        if not isinstance(t, Trial):
            raise TypeError(f"plan() holds a {type(t).__name__}, expected experiments.base.Trial")
        if t.name in names:
            raise ValueError(f"two trials named {t.name!r}")
        names.add(t.name)
    return plan


def protocol_entry(protocol: base.ClaimProtocol) -> dict[str, Any]:
    """The claim's pre-registered protocol as plain data (printed in the report and on docs/protocol.md)."""
    return plain(dataclasses.asdict(protocol))


def claim_entry(claim_id: str, result: ClaimResult, plan: Plan) -> dict[str, Any]:
    """results.json's entry for a summarised claim (plain data; figures get the file name they are drawn to).

    ``primary`` is the headline setting of the primary endpoint (its first setting) with its effect, CI, seed
    count, minimum detectable effect and test; ``votes`` lists the endpoint in every setting with the vote each
    cast; ``secondary`` the results that never vote; ``verifications`` the identities checked to a tolerance.
    ``key_number`` (the older contract) is the headline again, in the form {name, value, ci_low, ci_high, unit}.
    """
    if not isinstance(result, ClaimResult):
        raise TypeError(f"summarize() returned {type(result).__name__}, expected experiments.base.ClaimResult")
    if result.id != claim_id:
        raise ValueError(f"summarize() returned claim {result.id!r}, expected {claim_id!r}")
    if result.verdict not in VERDICTS:
        raise ValueError(f"summarize() returned verdict {result.verdict!r}")
    figures, files = [], set()
    for index, fig in enumerate(result.figures):
        spec = results_schema.figure_entry(fig)
        file = figure_filename(claim_id, spec)
        if file in files:
            file = figure_filename(claim_id, spec, index)
        files.add(file)
        figures.append({**spec, "file": file})
    decision = result.decision
    entry = plain(results_schema.claim_entry(
        claim_id, CLAIMS[claim_id].title, result.verdict, result.description.summary, rule=result.rule,
        method=result.description.method, primary=decision.primary[0].to_dict(),
        votes=[r.to_dict() for r in decision.primary], secondary=[r.to_dict() for r in decision.secondary],
        verifications=[v.to_dict() for v in decision.verifications], protocol=protocol_entry(result.protocol),
        seeds=plan.seeds, metrics=result.metrics, figures=figures,
        caveats=stand_in_caveats(plan) + list(result.description.caveats), config_hash=plan.key(),
        n_trials=len(plan.trials), about=_about(claim_id)))
    entry["reason"] = decision.reason  # how stats.combine decided, naming refuting settings or failed gates
    return entry


def stand_in_caveats(plan: Any) -> list[str]:
    """At the paper scale, one plain sentence per data set that stands in for a paper's data (`STAND_INS`)."""
    if plan.scale != "paper":
        return []  # smoke and default runs are CPU-sized by design; their protocol page says so
    used = set().union(*(datasets_of(t.params) for t in plan.trials)) if plan.trials else set()
    return [f"Ran on a stand-in: '{name}' instead of {STAND_INS[name]}. Give a local copy of the papers' data "
            "with --data-dir where bnlab reads one (CIFAR-10)." for name in sorted(used) if name in STAND_INS]


# ------------------------------------------------------------------------------------------------ the audit


def _progress_printer(log: Log | None, cached: set[str]) -> Callable[[Any], None] | None:
    if log is None:
        return None

    def progress(event: Any) -> None:
        width = len(str(event.total))
        record = event.record
        if event.trial.key() in cached:
            status = "cached"
        elif record["status"] == "ok":
            status = f"ok {record['duration_s']:.1f}s"
        else:
            status = f"FAILED after {record['attempts']} attempt(s): {record['error']}"
        log(f"[{event.done:>{width}}/{event.total}] {event.trial.claim} {event.trial.name}  {status}")

    return progress


def _plan_claims(request: AuditRequest) -> list[_Claim]:
    """Phase 2: every claim's state; the selected ones with a module get its checked plan, the data folder bound
    into each trial; the others (not selected, no module, import or plan failure) get their final entry."""
    states = [_Claim(cid) for cid in CLAIM_IDS]
    for st in states:
        if st.id not in request.claims:
            st.entry = _entry(st.id, "not_measured", "Not run in this audit: it was not among the claims "
                              f"selected ({', '.join(request.claims)}).")
            continue
        try:
            st.module = load_experiment(st.id)
        except Exception as exc:  # noqa: BLE001 - a broken module is reported, the others go on
            st.entry = _failed(st.id, "the experiment module failed to import", _describe(exc))
            continue
        if st.module is None:
            st.entry = _entry(st.id, "not_measured", "No experiment for this claim exists yet, so bnlab gives no "
                              f"verdict (its module {CLAIM_MODULES[st.id]} is not written).")
            continue
        try:
            plan = _check_plan(st.id, st.module.plan(request.scale, _first_look(request), request.first_seed))
        except Exception as exc:  # noqa: BLE001
            st.entry = _failed(st.id, "plan() failed", _describe(exc))
            continue
        st.plan = dataclasses.replace(plan, trials=tuple(bind_data(t, request.data_dir) for t in plan.trials))
    return states


def _run_trials(request: AuditRequest, runner: Any, trials: list[Trial], log: Log | None,
                progress: Any) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Phase 3: the trials of all claims, deduplicated by key, through the executor into OUT/trials/; returns
    (record per trial key, trial counts)."""
    store = TrialStore(request.out / TRIALS_DIR)
    unique = {t.key(): t for t in trials}
    cached = {k for k in unique if store.done(k)}
    if log is not None:
        log(f"bnlab audit: {len(request.claims)} claim(s), {len(unique)} unique trial(s) ({len(cached)} cached), "
            f"scale {request.scale}, {request.seeds or 'default'} seed(s) from {request.first_seed}, "
            f"executor {request.executor} -> {request.out}")
    if progress is not None:
        progress.expect(list(unique.values()), cached)
    records = runner.run(trials, store, progress=progress or _progress_printer(log, cached)) if trials else {}
    if progress is not None and hasattr(progress, "close"):
        progress.close()
    counts = {"unique": len(unique), "cached": len(cached), "ran": len(unique) - len(cached),
              "failed": sum(1 for r in records.values() if r["status"] != "ok")}
    return records, counts


def _summarise(st: _Claim, records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Phase 4: one planned claim's entry from its trials' records (inconclusive if a trial or summarize failed)."""
    plan = st.plan
    assert plan is not None
    failed = [(t, records[t.key()]) for t in plan.trials if records[t.key()]["status"] != "ok"]
    if failed:
        caveats = [f"trial {t.name} failed: {r['error']}" for t, r in failed[:MAX_ERRORS_SHOWN]]
        if len(failed) > MAX_ERRORS_SHOWN:
            caveats.append(f"... and {len(failed) - MAX_ERRORS_SHOWN} more failed trials")
        return _entry(st.id, "inconclusive", f"{len(failed)} of {len(plan.trials)} trials failed, so no verdict "
                      "was computed (a rerun retries them).", caveats=caveats, config_hash=plan.key(),
                      n_trials=len(plan.trials), seeds=plan.seeds)
    results = {t.name: copy.deepcopy(records[t.key()]["result"]) for t in plan.trials}
    try:
        return claim_entry(st.id, base.summarize(st.module, plan, results), plan)
    except Exception as exc:  # noqa: BLE001 - recorded honestly, the other claims go on
        return _failed(st.id, "summarize() failed", _describe(exc), config_hash=plan.key(),
                       n_trials=len(plan.trials), seeds=plan.seeds)


def _results(request: AuditRequest, states: Sequence[_Claim], trials: Sequence[Trial], counts: dict[str, int],
             duration_s: float, created: str) -> dict[str, Any]:
    """Phase 5: results.json as plain data (the claims, then the run's provenance at the top level)."""
    fingerprints = {t.fn: t.code() for t in trials}
    provenance = results_schema.provenance()
    return {
        "scale": request.scale,
        "seeds": request.seeds if request.seeds is not None else "default",
        "first_seed": request.first_seed,
        "duration_s": round(duration_s, 3),
        "created": created,
        "executor": request.executor,
        "claims_selected": list(request.claims),
        "trials": counts,
        "versions": provenance["versions"],
        "git_commit": provenance["git_commit"],
        "git_dirty": provenance["git_dirty"],
        "code_fingerprint": config_hash(sorted(fingerprints.items())),
        "code_fingerprints": dict(sorted(fingerprints.items())),
        "data_dir": str(request.data_dir.resolve()) if request.data_dir is not None else None,
        "claims": [st.entry for st in states],
    }


def _first_look(request: AuditRequest) -> int | base.Look:
    """`--seeds N`: a fixed-n audit (one look); otherwise the sequential plan's first look (`base.LOOKS`)."""
    return request.seeds if request.seeds is not None else base.Look({})


def _sequential_state(scale: str, st: _Claim) -> dict[str, Any] | None:
    """What `base.setting_result` reads from ``metrics["sequential"]`` for this claim's stage."""
    if st.look is None:
        return None
    return {"default_cost": st.module.PROTOCOL.cost, "schedules": {c: list(n) for c, n in base.LOOKS[scale].items()},
            "looks": {c: st.look.of(c) for c in base.LOOKS[scale]}, "frozen": dict(st.frozen)}


def _record_looks(st: _Claim, result: ClaimResult, scale: str) -> list[str]:
    """Book the votes of this look (history; decided ones frozen) and return the costs of undecided settings."""
    endpoint = result.protocol.endpoint
    undecided = []
    for r in result.decision.primary:
        if r.test == "verification" or r.setting in st.frozen:
            continue
        st.history.setdefault(r.setting, []).append(
            {"look": r.look, "n": r.n_seeds, "effect": r.effect, "p": r.p, "alpha_support": r.alpha_support,
             "alpha_refute": r.alpha_refute, "vote": r.vote})
        if r.vote in ("supported", "refuted"):
            st.frozen[r.setting] = r.to_dict()
        else:
            undecided.append(endpoint.setting_costs.get(r.setting, result.protocol.cost))
    for r in result.decision.primary:
        r.history = list(st.history.get(r.setting, []))
    return undecided


class _StagedRun:
    """The audit's run, stage after stage: plan -> run the trials -> decide per setting -> the next look's seeds for
    the claims with a setting still undecided (trials are cached by key, so only the added seeds run) -> ..."""

    def __init__(self, request: AuditRequest, runner: Any, store: TrialStore, log: Log | None, progress: Any):
        self.request, self.runner, self.store, self.log, self.progress = request, runner, store, log, progress
        self.unique: dict[str, Trial] = {}
        self.cached: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}
        self.fingerprints: dict[str, str] = {}
        self.stages = 0

    def counts(self) -> dict[str, int]:
        """Trial counts over all stages: unique, cached (found in the store), ran, failed."""
        return {"unique": len(self.unique), "cached": len(self.cached), "ran": len(self.unique) - len(self.cached),
                "failed": sum(1 for r in self.records.values() if r["status"] != "ok")}

    def run(self, active: list[_Claim]) -> None:
        for st in active:
            st.look = _first_look(self.request) if self.request.seeds is None else None
        while active:
            self._run_trials([t for st in active for t in st.plan.trials])
            active = [st for st in active if self._summarise(st)]

    def _run_trials(self, trials: list[Trial]) -> None:
        self.stages += 1
        self.fingerprints.update({t.fn: t.code() for t in trials})
        unique = {t.key(): t for t in trials}
        fresh = {k for k in unique if k not in self.unique}
        cached = {k for k in fresh if self.store.done(k)}
        self.unique.update(unique)
        self.cached |= cached
        req, log = self.request, self.log
        if log is not None:
            first = self.stages == 1
            log(f"bnlab audit: {len(req.claims)} claim(s), {len(unique)} unique trial(s) ({len(cached)} cached), "
                f"scale {req.scale}, {req.seeds or 'default'} seed(s) from {req.first_seed}, executor "
                f"{req.executor} -> {req.out}" if first else
                f"bnlab audit, stage {self.stages}: more seeds for the claims still undecided "
                f"({len(fresh) - len(cached)} new trial(s))")
        if self.progress is not None:
            self.progress.expect(list(unique.values()), cached | (set(unique) - fresh))
        if trials:
            self.records.update(self.runner.run(trials, self.store, progress=self.progress or
                                                _progress_printer(log, cached | (set(unique) - fresh))))
        if self.progress is not None and hasattr(self.progress, "close"):
            self.progress.close()

    def _summarise(self, st: _Claim) -> bool:
        """Decide the claim at this look; True when it goes on to the next look (a setting undecided, seeds left)."""
        plan, records = st.plan, self.records
        failed = [(t, records[t.key()]) for t in plan.trials if records[t.key()]["status"] != "ok"]
        if failed:
            caveats = [f"trial {t.name} failed: {r['error']}" for t, r in failed[:MAX_ERRORS_SHOWN]]
            if len(failed) > MAX_ERRORS_SHOWN:
                caveats.append(f"... and {len(failed) - MAX_ERRORS_SHOWN} more failed trials")
            st.entry = _entry(st.id, "inconclusive", f"{len(failed)} of {len(plan.trials)} trials failed, so no "
                              "verdict was computed (a rerun retries them).", caveats=caveats,
                              config_hash=plan.key(), n_trials=len(plan.trials), seeds=plan.seeds)
            return False
        results = {t.name: copy.deepcopy(records[t.key()]["result"]) for t in plan.trials}
        scale = self.request.scale
        try:
            result = base.summarize(st.module, plan, results, _sequential_state(scale, st))
            undecided = _record_looks(st, result, scale) if st.look is not None else []
            following = st.look.advanced(undecided, scale) if st.look is not None and undecided else None
            if following is not None:
                st.look = following
                plan = _check_plan(st.id, st.module.plan(scale, following, self.request.first_seed))
                st.plan = dataclasses.replace(plan, trials=tuple(bind_data(t, self.request.data_dir)
                                                                 for t in plan.trials))
                return True
            st.entry = claim_entry(st.id, result, plan)
            st.entry["sequential"] = _sequential_entry(scale, st, result)
        except Exception as exc:  # noqa: BLE001 - recorded honestly, the other claims go on
            st.entry = _failed(st.id, "summarize() failed", _describe(exc), config_hash=plan.key(),
                               n_trials=len(plan.trials), seeds=plan.seeds)
        return False


def _sequential_entry(scale: str, st: _Claim, result: ClaimResult) -> dict[str, Any]:
    """results.json's record of the claim's sequential plan: the looks reached per cost and the settings that
    reached their cap undecided (None for a fixed-n audit)."""
    if st.look is None:
        return {"plan": "fixed", "capped": []}
    endpoint = result.protocol.endpoint
    capped = [r.setting for r in result.decision.primary
              if r.test != "verification" and r.vote not in ("supported", "refuted")
              and st.look.of(endpoint.setting_costs.get(r.setting, result.protocol.cost)) + 1
              >= len(base.LOOKS[scale][endpoint.setting_costs.get(r.setting, result.protocol.cost)])]
    return {"plan": "sequential", "schedules": {c: list(n) for c, n in base.LOOKS[scale].items()},
            "looks_reached": {c: st.look.of(c) + 1 for c in base.LOOKS[scale]}, "capped": capped,
            "reason": result.decision.reason}


def run_audit(scale: str = "default", seeds: int | None = None, claims: str | Sequence[str] | None = None,
              out: str | os.PathLike = "runs/audit", executor: str = "process", *, workers: int | None = None,
              address: str | None = None, data_dir: str | os.PathLike | None = None, first_seed: int = 0,
              retries: int = 1, log: Log | None = print, progress: Any = None, force: bool = False) -> AuditResult:
    """Run the claims audit and write OUT/results.json and the report; see the module docstring.

    log: called with one line per event (start, each finished trial, figure errors); None for silence.
    progress: a `bnlab.sweeps.progress.ProgressBar` (or anything with ``expect(trials, cached)`` and ``__call__``)
    that replaces the line per finished trial, e.g. on a terminal.
    A KeyboardInterrupt propagates after the executor has stopped; the finished trials stay in OUT/trials/.
    force: write into an OUT that holds files the audit did not write (`bnlab.folders.claim_out_folder`).
    """
    request = validate_request(scale, seeds, claims, out, executor, workers, address, data_dir, first_seed, force)
    runner = get_executor(request.executor, workers=request.workers, address=request.address, retries=retries)
    claim_out_folder(request.out, "audit", force=request.force)
    start = time.perf_counter()
    created = results_schema.created_now()

    states = _plan_claims(request)
    run = _StagedRun(request, runner, TrialStore(request.out / TRIALS_DIR), log, progress)
    run.run([st for st in states if st.entry is None and st.plan is not None])
    counts = run.counts()

    results = _results(request, states, list(run.unique.values()), counts, time.perf_counter() - start, created)
    results["stages"] = run.stages  # audit stages run: 1 + the looks that added seeds (docs/protocol.md)
    results_path = write_json(request.out / RESULTS_FILE, results)
    files = write_report(request.out, results)
    if log is not None:
        for error in files.figure_errors:
            log(f"figure not drawn: {error}")
    return AuditResult(results, request.out, results_path, files.html, files.markdown, files.figure_errors,
                       counts)


def claims_section(results: Mapping[str, Any]) -> str:
    """The deterministic part of results.json (everything under "claims"), as canonical JSON text."""
    return json.dumps(results.get("claims"), sort_keys=True)
