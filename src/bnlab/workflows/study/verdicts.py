"""The claims a study decides, each as the audit decides it: a pre-registered endpoint, per-seed values paired by
seed (BN and its twin share the seed: init stream and batch order), the house rule (`experiments.base`) -- the test
its unit fixes (t for bounded values, exact signed-rank for log ratios), settings combined by `stats.combine` --
and secondary results that never vote.

| claim | per-seed value (positive = the claim's direction) | settings |
|---|---|---|
| C03 | cos(G, G′) BN − twin, mean over probe times (Santurkar Def. 2.1) | each weight layer after the first ¹ |
| C05 | log(loss variation twin / BN), mean of log over probe times (Santurkar Fig. 4a) | one |
| C06 | log(effective β-smoothness twin / BN), the same (Fig. 4c; the audit's C06 endpoint) | one |
| C11 | gradient spread at init twin − BN, decades (the audit's C11 measure) | one |
| C13 | log(steps to --target-acc twin / BN); final accuracy BN − twin, non-inferior (C13's margin) | speed, final |
| C14 | log(2-D roughness twin / BN) and ruggedness twin − BN, BN modes train and eval (the audit's C14) | four |

¹ the last weight layer (the head) is reported apart when two or more follow the first, as the audit's C03 does.

The functions take the runs `{"bn": [record per seed], "twin": [...]}` of `bnlab.workflows.study.net.measure_net`
and return results.json entries in the audit's schema, so `bnlab.report` renders a study like an audit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bnlab import results as results_schema
from bnlab.config import plain
from bnlab.experiments import base, stats
from bnlab.experiments.claims import CLAIMS
from bnlab.experiments.lr_grid import censored_steps_to_target
from bnlab.experiments.probed_training import ics_layer_means, seed_band
from bnlab.landscape.points import BN_MODES
from bnlab.workflows.study.config import StudyConfig

Runs = Mapping[str, Sequence[Mapping[str, Any]]]
ARMS = {"bn": "BN", "twin": "twin"}
MARGIN = base.ACCURACY_MARGIN  # C13's non-inferiority margin in accuracy
RUNS_TEXT = ("your model (BN) and its twin, trained with the same seeds, batches, optimizer and budget through "
             "bnlab.train")


def _endpoint(name: str, measure: str, unit: str, threshold_source: str, **kw: Any) -> base.Endpoint:
    """An endpoint whose every setting is decided by the test its unit fixes (`base.UNIT_TESTS`, as in the audit):
    t for bounded values, the exact signed-rank test for log ratios and decades; `per_setting` may move a
    threshold, never the test."""
    units, per = kw.pop("units", {}), dict(kw.pop("per_setting", {}))
    for setting in kw.get("settings", ("all",)):
        threshold = per.get(setting, (None, 0.0))[1]
        per[setting] = (base.fixed_test(units.get(setting, unit)), threshold)
    test = base.fixed_test(unit) if unit in base.UNIT_TESTS else "t"
    if test != "t":  # one unit for every setting: the endpoint's own test says it
        per = {s: v for s, v in per.items() if v != (test, 0.0)}
    return base.Endpoint(name=name, measure=measure, unit=unit, test=test, threshold=0.0,
                         threshold_source=threshold_source, per_setting=per, units=units, **kw)


C14_SETTINGS: tuple[str, ...] = ("roughness:train", "roughness:eval", "ruggedness:train", "ruggedness:eval")
ENDPOINTS: dict[str, base.Endpoint] = {
    "C03": _endpoint("ICS reduced by BN: cos(G, G′) BN − twin",
                     "per seed, in each weight layer after the first: cos(G, G′) with BN − twin (Santurkar Def. "
                     "2.1, the run's own optimizer, mean over probe times)", "cosine difference",
                     "0 = as much internal covariate shift with BN as without", settings=("layer:*",)),
    "C05": _endpoint("log(loss variation twin / BN)", "per seed: mean over probe times of log(loss variation "
                     "along −g) of the twin minus BN's (Santurkar Fig. 4a)", "log ratio", "0 = equally smooth"),
    "C06": _endpoint("log(effective β-smoothness twin / BN)", "per seed: mean over probe times of log(max_η "
                     "‖∇L(w − ηg) − g‖ / ‖ηg‖) of the twin minus BN's (Santurkar Fig. 4c: the claim's β)",
                     "log ratio", "0 = equal β"),
    "C11": _endpoint("gradient spread at init, twin − BN", "per seed: |log10 ‖∂L/∂W‖² first hidden / last hidden "
                     "layer| at initialisation, twin minus BN (BN in train mode)", "decades",
                     "0 = the same spread of gradient norms over depth"),
    "C13": _endpoint("BN reaches the target accuracy in fewer steps, and ends no worse",
                     "per seed: log(steps to --target-acc twin / BN) (unreached: steps + eval_every), and final "
                     "test accuracy BN − twin", "log ratio; accuracy",
                     f"0 = equally fast; −{MARGIN} for non-inferiority of the final accuracy (C13's margin)",
                     settings=("speed", "good_minimum"), per_setting={"good_minimum": ("t", -MARGIN)},
                     units={"speed": "log ratio", "good_minimum": "accuracy"}),
    "C14": _endpoint("no BN rougher and more rugged than BN, per BN mode",
                     "per seed and BN mode (train, eval): log R(twin) − log R(BN) of the 2-D training-loss "
                     "landscapes around the trained nets (filter-normalised directions, R = mean |Δ²L|/h² within "
                     "rough_radius of the centre), and U(twin) − U(BN), U = sqrt(SS_res / SS_tot) of the quadratic "
                     "fit within rough_radius", "log ratio; share of the surface's spread",
                     "0 = equally rough / rugged",
                     settings=C14_SETTINGS,
                     units={s: "log ratio" if s.startswith("roughness") else "share of the surface's spread"
                            for s in C14_SETTINGS}),
}
RULE = ("Per seed, the value above (BN and twin paired by seed). In each setting, the test its unit fixes (as in "
        "the audit): bounded values (cosines, accuracies, shares) by the 95% t-interval of the mean -- wholly above "
        "the threshold -> supported, wholly below -> refuted; log ratios and decades by the exact signed-rank test "
        "at 5% (an exact rank test needs at least 6 seeds to decide); otherwise inconclusive. Settings combined by "
        "stats.combine (supported only where every setting supports; refuted where one refutes and none "
        "supports). Secondary results are reported and never vote.")


def _series_log_mean(runs: Runs, arm: str, key: str) -> list[float]:
    return [stats.log_mean(r["along_gradient"].get(key, [])) for r in runs[arm]]


def _mode_value(rec: Mapping[str, Any], group: str, mode: str, key: str) -> float:
    value = (rec.get(group) or {}).get(mode, {}).get(key)
    return math.nan if value is None else float(value)


def _log_ratios(runs: Runs, group: str, mode: str, key: str) -> list[float]:
    return [stats.log_ratio(_mode_value(t, group, mode, key), _mode_value(b, group, mode, key))
            for b, t in zip(runs["bn"], runs["twin"])]


def _hessian_secondary(runs: Runs, group: str, mode: str, key: str) -> dict[str, Any]:
    """A secondary log ratio of the Hessian's λ_max or trace, with a note naming why seeds are missing: a trace
    (or λ_max) <= 0 has no logarithm (the Hessian is indefinite there: negative curvature outweighs the
    positive), and a probe the model could not support has no value at all."""
    values = _log_ratios(runs, group, mode, key)
    notes = []
    for arm, name in NAMES.items():
        reason = next(((r.get("not_measured") or {}).get("hessian") for r in runs[arm]
                       if (r.get("not_measured") or {}).get("hessian")), None)
        if reason:
            notes.append(f"not measured on {name}: {reason}")
            continue
        negative = [r["seed"] for r in runs[arm] if _mode_value(r, group, mode, key) <= 0]
        if negative:
            notes.append(f"{name}'s {key.replace('_', ' ')} is <= 0 in seed(s) {', '.join(map(str, negative))}: "
                         "no log ratio there (the Hessian is indefinite, negative curvature outweighs the positive)")
    if all(r.get(group) and mode not in r[group] for r in runs["bn"]):  # net.running_stats_at_init
        notes.append(f"not measured in BN mode {mode} here: the BN net's running statistics were still their initial "
                     "(0, 1), so in eval mode it was the net without normalisation")
    return {"values": values, "unit": "log ratio", "note": "; ".join(notes)}


def _curve_figure(fig_id: str, title: str, runs: Runs, key: str, ylabel: str) -> base.Figure:
    series = [seed_band([r["along_gradient"]["step"] for r in runs[a]], [r["along_gradient"][key] for r in runs[a]],
                        label) for a, label in ARMS.items()]
    return base.Figure(fig_id, "lines", title, "Mean over seeds with the min–max band; probes before each probed "
                       "step's update, on that step's batch.",
                       {"panels": [{"title": title, "xlabel": "step", "ylabel": ylabel, "yscale": "log",
                                    "series": series}]})


def c03(runs: Runs) -> tuple[dict[str, Any], list[base.Figure]]:
    means = {a: [ics_layer_means(r["ics"]) for r in runs[a]] for a in ARMS}
    layers = [layer for layer in (runs["bn"][0]["ics"].get("layers") or [])[1:]
              if all(layer in m for arm in means.values() for m in arm)]
    voting, head = (layers[:-1], layers[-1:]) if len(layers) >= 2 else (layers, [])

    def diff(layer: str) -> list[float]:
        return stats.paired_differences([m[layer] for m in means["bn"]], [m[layer] for m in means["twin"]])

    secondary = {f"cos(G, G′) BN − twin, the head [{layer}]": {"values": diff(layer), "unit": "cosine difference"}
                 for layer in head}
    bars = {"title": "cos(G, G′) per weight layer (mean over seeds)", "ylabel": "cos(G, G′)",
            "categories": layers,
            "groups": [{"label": label, "values": [stats.mean_ci([m[layer] for m in means[a]]).effect
                                                   for layer in layers]} for a, label in ARMS.items()]}
    fig = base.Figure("ics_cosine", "bars", "ICS per layer: cos(G, G′)", "G: the layer's gradient; G′: the same after "
                      "the earlier layers took the optimizer's step (Santurkar Def. 2.1). Higher = less shift.",
                      {"panels": [bars]})
    return {"primary": {f"layer:{layer}": diff(layer) for layer in voting}, "secondary": secondary}, [fig]


def c05(runs: Runs) -> tuple[dict[str, Any], list[base.Figure]]:
    values = stats.paired_differences(_series_log_mean(runs, "twin", "loss_variation"),
                                      _series_log_mean(runs, "bn", "loss_variation"))
    return ({"primary": {"all": values}, "secondary": {}},
            [_curve_figure("loss_variation", "Loss variation along −g", runs, "loss_variation", "max − min loss")])


def c06(runs: Runs) -> tuple[dict[str, Any], list[base.Figure]]:
    values = stats.paired_differences(_series_log_mean(runs, "twin", "beta_smoothness"),
                                      _series_log_mean(runs, "bn", "beta_smoothness"))
    secondary = {"log(gradient predictiveness twin / BN)": {
        "values": stats.paired_differences(_series_log_mean(runs, "twin", "gradient_predictiveness"),
                                           _series_log_mean(runs, "bn", "gradient_predictiveness")),
        "unit": "log ratio", "note": "Fig. 4b's band, not divided by ‖ηg‖: it also shrinks with the gradient's size"}}
    secondary |= {f"log(Hessian {key} twin / BN) at initialisation, BN mode {mode}":
                  _hessian_secondary(runs, "hessian_start", mode, key)
                  for key in ("lambda_max", "trace") for mode in ("train", "eval")}
    return ({"primary": {"all": values}, "secondary": secondary},
            [_curve_figure("gradient_predictiveness", "Gradient predictiveness along −g", runs,
                           "gradient_predictiveness", "max ‖∇L(w − ηg) − g‖")])


def c11(runs: Runs) -> tuple[dict[str, Any], list[base.Figure]]:
    values = stats.paired_differences([r["gradient_spread"] for r in runs["twin"]],
                                      [r["gradient_spread"] for r in runs["bn"]])
    series = [seed_band([list(range(len(r["layers"]))) for r in runs[a]], [r["weight_grad_sq_init"] for r in runs[a]],
                        label) for a, label in ARMS.items()]
    fig = base.Figure("gradient_norms_init", "lines", "‖∂L/∂W‖² per weight layer at initialisation",
                      "Layers in forward order (" + ", ".join(runs["bn"][0]["layers"]) + "); mean over seeds.",
                      {"panels": [{"title": "gradient norms at init", "xlabel": "weight layer (forward order)",
                                   "ylabel": "‖∂L/∂W‖²", "yscale": "log", "series": series}]})
    return {"primary": {"all": values}, "secondary": {}}, [fig]


def c13(runs: Runs, cfg: StudyConfig, chance: float) -> tuple[dict[str, Any], list[base.Figure]]:
    target, censor = float(cfg.target_acc or 1.0), cfg.steps + cfg.eval_every

    def steps(rec: Mapping[str, Any]) -> int:
        h = rec.get("history") or {}
        return censored_steps_to_target({"stopped_at_step": rec["diverged_at_step"],
                                         "eval_step": h.get("eval_step", []),
                                         "test_acc_curve": [math.nan if a is None else a
                                                            for a in h.get("test_acc", [])]},
                                        target, censor)[0]

    def final(rec: Mapping[str, Any]) -> float:
        return chance if rec["test_acc"] is None else float(rec["test_acc"])

    speed = stats.paired_log_ratios([steps(r) for r in runs["twin"]], [steps(r) for r in runs["bn"]])
    good = stats.paired_differences([final(r) for r in runs["bn"]], [final(r) for r in runs["twin"]])
    secondary = {f"steps to {target:g} test accuracy, {label} (seeds that never reached it left out)": {
        "values": [float(steps(r)) if steps(r) < censor else None for r in runs[a]], "unit": "steps"}
        for a, label in ARMS.items()}
    series = [seed_band([r["history"]["eval_step"] for r in runs[a]], [r["history"]["test_acc"] for r in runs[a]],
                        label) for a, label in ARMS.items()]
    series.append({"label": f"target {target:g}", "x": [0, cfg.steps], "y": [target, target]})
    fig = base.Figure("test_accuracy", "lines", "Test accuracy over training", "Mean over seeds with the min–max "
                      "band; the horizontal line is --target-acc.",
                      {"panels": [{"title": "test accuracy", "xlabel": "step", "ylabel": "accuracy",
                                   "series": series}]})
    metrics: dict[str, Any] = {"primary": {"speed": speed, "good_minimum": good}, "secondary": secondary}
    if all(steps(r) >= censor for arm in runs.values() for r in arm):
        best = {a: max((a_ for r in runs[a] for a_ in (r.get("history") or {}).get("test_acc", []) if a_ is not None),
                       default=math.nan) for a in ARMS}
        metrics["inconclusive_because"] = (
            f"no net reached the target test accuracy {target:g} within {cfg.steps} steps in any seed (best: BN "
            f"{best['bn']:.2f}, twin {best['twin']:.2f}), so there is no speed to compare; lower --target-acc or "
            "train longer (--steps)")
    return metrics, [fig]


def c14(runs: Runs, cfg: StudyConfig) -> tuple[dict[str, Any], list[base.Figure]]:
    secondary: dict[str, dict[str, Any]] = {}
    for mode in BN_MODES[2:]:  # recalibrated: reported; train and eval vote, as in the audit
        secondary[f"log(2-D roughness twin / BN), BN mode {mode}"] = {
            "values": _log_ratios(runs, "landscape", mode, "roughness_2d"), "unit": "log ratio"}
    for mode in BN_MODES:
        secondary[f"log(1-D roughness twin / BN), BN mode {mode}"] = {
            "values": _log_ratios(runs, "landscape", mode, "roughness_1d"), "unit": "log ratio"}
    for key in ("lambda_max", "trace"):
        for mode in ("train", "eval"):
            secondary[f"log(Hessian {key} twin / BN) at the end, BN mode {mode}"] = _hessian_secondary(
                runs, "hessian_end", mode, key)
    figures: list[base.Figure] = []
    bn, twin = runs["bn"][0].get("landscape") or {}, runs["twin"][0].get("landscape") or {}
    if bn and twin:
        modes = [m for m in BN_MODES if m in bn and m in twin]  # eval modes only when measured (--probes)
        panels = [{"title": f"BN, {mode} mode", "x": bn[mode]["x"], "y": bn[mode]["y"], "z": bn[mode]["loss"]}
                  for mode in modes] + [{"title": "twin", "x": twin["train"]["x"], "y": twin["train"]["y"],
                                            "z": twin["train"]["loss"]}]
        figures.append(base.Figure("landscape_2d", "contours", "2-D loss landscapes (first seed), shared levels",
                                   "Training loss on two filter-normalised random directions (the same in every "
                                   "mode); identical axes, levels and log colour scale.",
                                   {"panels": panels, "levels": 30, "zscale": "log", "same_scale": True}))
        lines = [{"title": f"BN {mode} mode", "xlabel": "filter-normalised step", "ylabel": "training loss",
                  "yscale": "log", "series": [{"label": "BN", "x": bn[mode]["t"], "y": bn[mode]["line_loss"]},
                                              {"label": "twin", "x": twin[mode]["t"], "y": twin[mode]["line_loss"]}]}
                 for mode in modes]
        figures.append(base.Figure("landscape_1d", "lines", "1-D loss landscapes (first seed)",
                                   "Training loss along a third filter-normalised random direction.",
                                   {"panels": lines}))
    def rugged(mode: str) -> list[float]:
        return stats.paired_differences([_mode_value(t, "landscape", mode, "ruggedness_2d") for t in runs["twin"]],
                                        [_mode_value(b, "landscape", mode, "ruggedness_2d") for b in runs["bn"]])

    primary = {**{f"roughness:{m}": _log_ratios(runs, "landscape", m, "roughness_2d") for m in ("train", "eval")},
               **{f"ruggedness:{m}": rugged(m) for m in ("train", "eval")}}
    return {"primary": primary, "secondary": secondary}, figures


# the probe each claim's primary endpoint needs (C13 needs only the training run)
CLAIM_PROBES = {"C03": "ics", "C05": "along_gradient", "C06": "along_gradient", "C11": "gradient_flow",
                "C14": "landscape"}
# the claims a net that diverged or stayed at chance touches: every one measured on the trained or training net
# (C11 is measured at initialisation, before any step)
TRAINED_CLAIMS = ("C03", "C05", "C06", "C13", "C14")
NAMES = {"bn": "the BN net", "twin": "the twin"}


def at_chance(rec: Mapping[str, Any], chance: float) -> bool:
    """A trained classifier whose final test accuracy is below chance + 10% of the way to 1: it did not learn."""
    acc = rec.get("test_acc")
    return bool(rec.get("trained")) and acc is not None and math.isfinite(chance) and acc < chance + 0.1 * (1 - chance)


def net_problems(runs: Runs, chance: float) -> list[str]:
    """Each net that diverged or ended at chance, in words (seeds and steps named)."""
    problems = []
    for arm, name in NAMES.items():
        diverged = [(r["seed"], r["diverged_at_step"]) for r in runs[arm] if r.get("diverged_at_step") is not None]
        if diverged:
            problems.append(f"{name} diverged (" + ", ".join(f"seed {s} at step {k}" for s, k in diverged) +
                            f") at lr {runs[arm][0].get('lr', '?')}")
        stuck = [(r["seed"], r["test_acc"]) for r in runs[arm] if at_chance(r, chance)]
        if stuck:
            problems.append(f"{name} ended at chance (test accuracy " + ", ".join(f"{a:.2f} in seed {s}"
                                                                                  for s, a in stuck) +
                            f"; chance {chance:.2f}) at lr {runs[arm][0].get('lr', '?')}")
    return problems


def _not_measured(runs: Runs, probe: str) -> str | None:
    """Why `probe` has no numbers (left out with --probes, or the model could not support it), or None."""
    for arm, name in NAMES.items():
        for r in runs[arm]:
            if probe in (r.get("not_selected") or []):
                return f"not measured: left out with --probes (no {probe})"
            reason = (r.get("not_measured") or {}).get(probe)
            if reason:
                return f"not measured: {probe} failed on {name}, seed {r['seed']}: {reason}"
    return None


def _entry(claim: str, verdict: str, summary: str, runs: Runs, caveats: Sequence[str] = ()) -> dict[str, Any]:
    """A claim entry without a decision (not measured)."""
    return results_schema.claim_entry(claim, CLAIMS[claim].title, verdict, summary, rule=RULE, caveats=caveats,
                                      seeds=[r["seed"] for r in runs["bn"]], n_trials=2 * len(runs["bn"]),
                                      about=CLAIMS[claim].to_dict())


def _summary(claim: str, decision: base.Decision) -> str:
    votes = "; ".join(f"{r.setting}: {base.brief(r)}" if r.setting != "all" else base.brief(r)
                      for r in decision.primary)
    return f"On your model, {ENDPOINTS[claim].name}: {votes}. Verdict: {decision.verdict}."


def _measured(runs: Runs, cfg: StudyConfig, chance: float) -> dict[str, Any]:
    """claim -> (metrics, figures) or the reason it is not measured."""
    makers = {"C03": lambda: c03(runs), "C05": lambda: c05(runs), "C06": lambda: c06(runs), "C11": lambda: c11(runs),
              "C14": lambda: c14(runs, cfg)}
    if cfg.target_acc is not None and all(r["trained"] for arm in runs.values() for r in arm):
        makers["C13"] = lambda: c13(runs, cfg, chance)
    out: dict[str, Any] = {}
    for claim, make in makers.items():
        reason = _not_measured(runs, CLAIM_PROBES[claim]) if claim in CLAIM_PROBES else None
        out[claim] = reason if reason else make()
    return out


def claim_entries(runs: Runs, cfg: StudyConfig, chance: float) -> list[dict[str, Any]]:
    """results.json's claim entries of a study (the claims of the module doc; C13 only with a target). A claim
    whose probe was left out or failed is not measured (the reason named); a claim touched by a net that diverged
    or ended at chance is inconclusive with that reason, whatever its interval says."""
    problems = net_problems(runs, chance)
    entries = []
    for claim, measured in sorted(_measured(runs, cfg, chance).items()):
        if isinstance(measured, str):
            entries.append(_entry(claim, "not_measured", f"On your model: {measured}.", runs, [measured]))
            continue
        metrics, figures = measured
        endpoint = ENDPOINTS[claim]
        if not metrics["primary"]:
            raise ValueError(f"{claim}: no setting to vote in")  # C03 on a net with a single weight layer
        decision = (base.decide_each if endpoint.settings == ("layer:*",) else base.decide_endpoint)(endpoint,
                                                                                                    metrics)
        verdict, summary, caveats = decision.verdict, _summary(claim, decision), []
        if metrics.get("inconclusive_because"):
            verdict, caveats = "inconclusive", [metrics["inconclusive_because"]]
            summary = f"On your model, {endpoint.name}: inconclusive: {metrics['inconclusive_because']}."
        elif problems and claim in TRAINED_CLAIMS:
            caveats = [f"{p}: this claim is inconclusive, never decided by a net that did not train" for p in problems]
            verdict = "inconclusive"
            summary = (f"{summary[: -len(decision.verdict) - 1]}inconclusive, because " + "; ".join(problems) +
                       f" (the interval alone would say {decision.verdict}).")
        protocol = base.ClaimProtocol(endpoint=endpoint, cost="study", runs=RUNS_TEXT,
                                      secondary=tuple(metrics["secondary"]))
        entries.append(plain(results_schema.claim_entry(
            claim, CLAIMS[claim].title, verdict, summary, rule=RULE,
            primary=decision.primary[0].to_dict(), votes=[r.to_dict() for r in decision.primary],
            secondary=[r.to_dict() for r in decision.secondary], protocol=dataclasses.asdict(protocol),
            seeds=[r["seed"] for r in runs["bn"]], metrics={"per_seed": dict(metrics["primary"])},
            figures=[results_schema.figure_entry(f) for f in figures], caveats=caveats, n_trials=2 * len(runs["bn"]),
            about={**CLAIMS[claim].to_dict(), "how_tested": f"On your model: {endpoint.measure}."})))
    return entries
