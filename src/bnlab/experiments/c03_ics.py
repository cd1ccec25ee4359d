"""C03 — "BN works because it reduces internal covariate shift" (Ioffe & Szegedy 2015), tested with both measures.

What is measured (the shared runs of `bnlab.experiments.probed_training`):
* Santurkar Def. 2.1 (Fig. 3), per weight layer: G is the layer's gradient, G′ its gradient on the same batch after
  only the earlier layers took the run's actual optimizer step; cos(G, G′) and ‖G − G′‖/‖G‖, averaged over probe
  times (the first layer left out: G′ = G there). VGG with and without BN, and the 25-layer deep linear net.
* Ioffe Fig. 1: the 15/50/85th percentiles of five last-hidden-layer sigmoid inputs of Ioffe's MLP on held-out
  images over training; the *relative percentile drift* is each percentile's range over training divided by the
  unit's own 15–85 spread (mean over probe times), averaged (`probed_training.relative_percentile_drift`). In raw
  units the drift is close to nothing for BN by construction (the watched input is standardised on the very
  inputs it is measured on) and large for a net whose pre-activations are simply larger; the ratio to the unit's
  own spread asks how far the distribution moves relative to its width.

Primary endpoint, one vote per setting (the claim's verdict needs every setting to agree, `stats.combine`):
* each VGG conv layer after the first (Santurkar's layers; the classifier head is reported apart): per seed
  cos(G, G′) with BN − without (positive: BN reduces the gradient change, i.e. ICS);
* Ioffe's distributional measure: per seed log(relative percentile drift without BN / with BN) (positive: BN
  steadier).
A run that diverged, or a probe that gave no finite number, is the worst outcome for the net it belongs to, never
a missing seed (`bnlab.experiments.outcomes`): its cosine counts as −1 (the bottom of the bounded scale: G′ opposite
to G, the most gradient change there is), its drift ratio as ±inf (only no BN failed -> +inf, only BN -> −inf, both
-> a tie). Conv layers (bounded cosines): 95% t-interval wholly above 0 -> supported, wholly below -> refuted, else
inconclusive. Ioffe's log ratio: the exact Wilcoxon signed-rank test, two-sided p < 0.05 with the Hodges–Lehmann
effect above 0 -> supported, below -> refuted, else inconclusive.
Secondary: the raw percentile drift's log ratio, the head's cosine, the log ratio of relative distances per conv
layer, the deep linear net's mean cosine over layers, and the MLP's test accuracy.
C03's verdict depends on the definition of ICS: the two measures answer different questions (does a layer's input
distribution move; does a layer's gradient change when the layers below it update).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bnlab.experiments import base, outcomes, stats
from bnlab.experiments.probed_training import (
    family_seeds,
    ics_layer_means,
    ics_means,
    percentile_drift,
    relative_percentile_drift,
    run_settings,
    run_trial,
    seed_band,
)

CLAIM_ID = "C03"
NORMS: tuple[str, ...] = ("bn", "none")
FAMILIES: tuple[str, ...] = ("mlp", "vgg", "dln")
LABELS = {"bn": "BN", "none": "no BN"}
DLN_COSINE = "deep linear net: mean cos(G, G′) over layers, BN − none"
# the cosine a net that diverged counts as in the primary endpoint: the bottom of the bounded scale (G′ = −G)
WORST_COSINE = -1.0

PROTOCOL = base.ClaimProtocol(
    endpoint=base.Endpoint(
        name="ICS reduced by BN",
        measure="per seed, in each VGG conv layer after the first: cos(G, G′) with BN − without (Santurkar Def. 2.1, "
                "mean over probe times); and for Ioffe's MLP: log(relative percentile drift without BN / with BN), the "
                "drift of each watched percentile over training in units of the unit's own 15–85 spread",
        unit="cosine difference; log ratio", test="t", threshold=0.0,
        threshold_source="0 = as much internal covariate shift with BN as without; the claim predicts less with BN",
        settings=("conv:*", "ioffe"), units={"conv:*": "cosine difference", "ioffe": "log ratio"},
        per_setting={"ioffe": ("signed_rank", 0.0)}, setting_costs={"ioffe": "cheap"}),
    cost="costly",
    secondary=("log(raw percentile drift none / BN), Ioffe MLP",
               "the VGG classifier head's cos(G, G′), BN − none",
               "log(relative distance ‖G − G′‖/‖G‖ none / BN) per conv layer",
               "deep linear net: mean cos(G, G′) over layers, BN − none", "Ioffe MLP test accuracy"),
    runs="the shared runs: bnlab's narrow VGG on digits (5 seeds), Ioffe's 3 × 100 sigmoid MLP on mnist5k (2000 SGD "
         "steps, lr 0.5, batch 60, 8 seeds) and Santurkar's deep linear net (8 seeds); ICS of every weight layer every "
         "50 steps",
    paper="Ioffe Fig. 1: MNIST, 50k steps; Santurkar Fig. 3: VGG on CIFAR-10 (15k steps) and the DLN — BN does not "
          "reduce ICS. The default scale is shorter and the VGG narrow (conv layers 2 and 3 of 3 measured).",
    why="One vote per conv layer, as Santurkar plots them: averaging over layers let the classifier head (cos 0.09 "
        "without BN) outvote both conv layers, where BN had more gradient change — the opposite finding. The head "
        "is reported apart. Ioffe's percentile drift is the second measure, now scale-free: in raw units it is close "
        "to nothing for BN by construction (the sigmoid input is standardised on the inputs it is measured on), so "
        "the drift is divided by the unit's own 15–85 spread; the raw drift is reported beside it. The verdict "
        "depends on which definition of ICS is taken, and the reading says so.")

# the smallest effect the endpoint cares about: the protocol page's power and MDE are computed at it
INTEREST = base.Interest(
    0.05,
    "0.05 of cosine similarity (a judgement: a twentieth of the range over which Santurkar's Fig. 5 "
    "cosines move); for Ioffe's percentile drift a factor of 2 (log 2)",
    per_setting={"ioffe": 0.69})

RULE = ("One vote per setting: each VGG conv layer after the first (per seed: cos(G, G′) with BN − without, mean over "
        "probe times) and Ioffe's MLP (per seed: log(relative percentile drift without BN / with BN), the drift in "
        "units of each unit's own 15–85 spread). A run that diverged or a probe with no finite number is the worst "
        "outcome for its net: cosine −1; drift ratio +inf if only no BN failed, −inf if only BN, a tie if both. "
        "Conv layers: the 95% t-interval of the mean wholly above 0 -> supported (BN reduces ICS), wholly below 0 "
        "-> refuted, otherwise inconclusive. Ioffe's MLP: the exact Wilcoxon signed-rank test, two-sided p < 0.05 "
        "with the Hodges–Lehmann effect above 0 -> supported, below 0 -> refuted, otherwise inconclusive. The "
        "claim: supported only when every setting is; refuted when one is refuted and none "
        "supported; supported in one and refuted in another -> mixed; otherwise inconclusive. The head, relative "
        "distances and the deep linear net are reported, never voted.")


def plan(scale: str, seeds: int | None = None, first_seed: int = 0) -> base.Plan:
    fam_seeds = {f: family_seeds(f, scale, seeds, first_seed) for f in FAMILIES}
    trials = [run_trial(CLAIM_ID, f, scale, n, s) for f in FAMILIES for n in NORMS for s in fam_seeds[f]]
    config = {"runs": {f: run_settings(f, scale) for f in FAMILIES}, "norms": list(NORMS),
              "seeds": {f: list(v) for f, v in fam_seeds.items()}}
    return base.Plan(CLAIM_ID, scale, fam_seeds["mlp"], config, tuple(trials))


def _runs(plan: base.Plan, results: Mapping[str, dict], family: str) -> dict[str, list[dict[str, Any]]]:
    return {n: [results[f"{family}/{n}/seed={s}"] for s in plan.config["seeds"][family]] for n in NORMS}


def measure(plan: base.Plan, results: Mapping[str, dict]) -> dict[str, Any]:
    vgg, mlp, dln = (_runs(plan, results, f) for f in ("vgg", "mlp", "dln"))
    cos = {n: [ics_layer_means(r["ics"], "cosine") for r in vgg[n]] for n in NORMS}
    rel = {n: [ics_layer_means(r["ics"], "relative_distance") for r in vgg[n]] for n in NORMS}
    layers = list(cos["bn"][0])
    convs = [layer for layer in layers if layer.endswith("conv")]  # Santurkar's layers; the rest: the classifier
    heads = [layer for layer in layers if layer not in convs]
    vgg_failed = {n: [r["diverged_at_step"] is not None for r in vgg[n]] for n in NORMS}
    scored_cos = {n: [[outcomes.scored(c[layer], f, WORST_COSINE) for c, f in zip(cos[n], vgg_failed[n])]
                  for layer in convs] for n in NORMS}  # (conv layers, seeds)
    primary = {f"conv:{layer}": stats.paired_differences(scored_cos["bn"][j], scored_cos["none"][j])
               for j, layer in enumerate(convs)}
    drift = {n: [relative_percentile_drift(r["activations"]) for r in mlp[n]] for n in NORMS}
    raw_drift = {n: [percentile_drift(r["activations"]) for r in mlp[n]] for n in NORMS}
    drift_failed = {n: [outcomes.failed(r["diverged_at_step"] is not None, d) for r, d in zip(mlp[n], drift[n])]
                    for n in NORMS}
    primary["ioffe"] = outcomes.paired_worst_values(stats.paired_log_ratios(drift["none"], drift["bn"]),
                                                    drift_failed["bn"], drift_failed["none"])
    secondary: dict[str, dict[str, Any]] = {"Ioffe MLP: log(raw percentile drift none / BN)": {
        "values": stats.paired_log_ratios(raw_drift["none"], raw_drift["bn"]), "unit": "log ratio",
        "note": "in the sigmoid input's own units: BN's is small by construction (standardised on these inputs)"}}
    secondary |= {
        f"cos(G, G′) BN − none, classifier layer {head}": {
            "values": stats.paired_differences([c[head] for c in cos["bn"]], [c[head] for c in cos["none"]]),
            "unit": "cosine difference", "note": "reported apart: the classifier is not one of Santurkar's layers"}
        for head in heads}
    for layer in convs:
        secondary[f"log(relative distance none / BN) [{layer}]"] = {
            "values": stats.paired_log_ratios([r[layer] for r in rel["none"]], [r[layer] for r in rel["bn"]]),
            "unit": "log ratio"}
    dln_cos = {n: [ics_means(r["ics"])["cosine"] for r in dln[n]] for n in NORMS}
    secondary[DLN_COSINE] = {
        "values": stats.paired_differences(dln_cos["bn"], dln_cos["none"]), "unit": "cosine difference",
        "note": "Santurkar Fig. 3: with BN, G and G′ become nearly uncorrelated in the DLN (a clearly negative value)"}
    secondary["Ioffe MLP: test accuracy, BN − none"] = {
        "values": stats.paired_differences([r["final"].get("test_acc") for r in mlp["bn"]],
                                           [r["final"].get("test_acc") for r in mlp["none"]]), "unit": "accuracy"}
    return {"primary": primary, "secondary": secondary, "percentile_drift": drift, "raw_percentile_drift": raw_drift,
            "vgg_cosine": {n: [[c[layer] for layer in layers] for c in cos[n]] for n in NORMS}, "vgg_layers": layers}


def decide(metrics: Mapping[str, Any]) -> base.Decision:
    """One vote per key of metrics["primary"] (every measured conv layer, and "ioffe"), combined by stats.combine."""
    return base.decide_each(PROTOCOL.endpoint, metrics)


def _geometric_mean(values: list) -> float | None:
    """exp(mean log) of the positive finite values (what a log axis draws), None if there are none."""
    v = stats.log_mean(values)
    return math.exp(v) if math.isfinite(v) else None


def figures(plan: base.Plan, results: Mapping[str, dict], metrics: Mapping[str, Any]) -> list[base.Figure]:
    mlp = _runs(plan, results, "mlp")
    acc_panel = {"title": "Ioffe MLP: test accuracy", "xlabel": "step", "ylabel": "test accuracy",
                 "series": [seed_band([r["curves"]["eval_step"] for r in mlp[n]],
                                      [r["curves"]["test_acc"] for r in mlp[n]], LABELS[n]) for n in NORMS]}
    pct_panels = []
    for n in NORMS:
        act = mlp[n][0]["activations"]
        pct_panels.append({
            "title": f"{LABELS[n]}: sigmoid input of unit {act['units'][0]} (seed {plan.config['seeds']['mlp'][0]})",
            "xlabel": "step", "ylabel": "percentile of the sigmoid input",
            "series": [{"label": f"{p:g}th", "x": act["step"], "y": [q[0][j] for q in act["unit_percentiles"]]}
                       for j, p in enumerate(act["percentiles"])]})
    figs = [base.Figure("ioffe_fig1a", "lines", "Ioffe Fig. 1a: test accuracy, MLP with and without BN",
                   "Test accuracy over training (mean over seeds, band min–max).", {"panels": [acc_panel]}),
            base.Figure("ioffe_fig1bc", "lines", "Ioffe Fig. 1b, c: a sigmoid input's percentiles over training",
                   "15/50/85th percentiles of one last-hidden-layer sigmoid input on held-out examples (first seed); "
                   "same y scale in both panels.", {"panels": pct_panels, "sharey": True})]
    for family, name in (("vgg", "VGG"), ("dln", "deep linear net")):
        runs, left_out = _finished_runs(plan, results, family)
        panels = []
        for key, ylabel in (("distance", "‖G − G′‖₂ (geometric mean over layers)"),
                            ("cosine", "cos(G, G′) (mean over layers)")):
            # distances span decades: their geometric mean (exp of the mean log), always > 0 on the log axis
            series = [seed_band([r["ics"]["step"] for r in runs[n]],
                                [[_geometric_mean(row[1:]) if key == "distance" else _mean(row[1:])
                                  for row in r["ics"][key]] for r in runs[n]], LABELS[n]) for n in NORMS]
            panels.append({"title": f"{name}: {key}", "xlabel": "step", "ylabel": ylabel, "series": series,
                           **({"yscale": "log"} if key == "distance" else {})})
        figs.append(base.Figure(f"santurkar_fig3_{family}", "lines", f"Santurkar Fig. 3: ICS over training, {name}",
                           "G: a layer's gradient; G′: the same layer's gradient on the same batch after the earlier "
                           "layers took the run's optimizer step. Layers 2..L; band: min–max over seeds." + left_out,
                           {"panels": panels}))
    layers = metrics["vgg_layers"]
    bars = {"title": "VGG: cos(G, G′) per layer (mean over time and seeds)", "ylabel": "cos(G, G′)",
            "categories": layers,
            "groups": [{"label": LABELS[n], "values": [_mean([c[j] for c in metrics["vgg_cosine"][n]])
                                                       for j in range(len(layers))]} for n in NORMS]}
    figs.append(base.Figure("ics_layers_vgg", "bars", "ICS per layer, VGG",
                       "cos(G, G′) per weight layer (layer 1 left out: G′ = G), averaged over probe times and seeds; "
                       "the conv layers vote, the head is reported apart. Higher = less internal covariate shift.",
                       {"panels": [bars]}))
    return figs


def _finished_runs(plan: base.Plan, results: Mapping[str, dict], family: str) -> tuple[dict[str, list], str]:
    """The runs of `family` per norm without the ones that diverged (a band over seeds is cut to its shortest
    curve, so one run that diverged at step 3 would shrink every seed's curve to the step-0 probe), and a caption
    sentence naming what was left out ("" when nothing was). A norm whose runs all diverged keeps them."""
    runs = _runs(plan, results, family)
    seeds = plan.config["seeds"][family]
    kept, notes = {}, []
    for n in NORMS:
        diverged = [(s, r["diverged_at_step"]) for s, r in zip(seeds, runs[n]) if r.get("diverged_at_step") is not None]
        finished = [r for r in runs[n] if r.get("diverged_at_step") is None]
        kept[n] = finished or runs[n]
        if diverged and finished:
            notes.append(f"{LABELS[n]}: " + ", ".join(f"seed {s} diverged at step {t}" for s, t in diverged)
                         + " and is left out of the band")
    return kept, (" " + "; ".join(notes) + "." if notes else "")


def _geometric_mean(values: list) -> float | None:
    """exp(mean log) of the positive finite values; None when there are none (the point is left out)."""
    log = stats.log_mean(values)
    return math.exp(log) if math.isfinite(log) else None


def _mean(values: list) -> float | None:
    xs = stats.finite(values)
    return sum(xs) / len(xs) if xs else None


def describe(plan: base.Plan, metrics: Mapping[str, Any], decision: base.Decision) -> base.Description:
    parts = "; ".join(f"{r.setting.removeprefix('conv:')} {base.brief(r, 3)}" for r in decision.primary)
    dln = next(r for r in decision.secondary if r.name == DLN_COSINE)
    reproduced = dln.ci_high is not None and dln.ci_high < 0
    dln_text = (f"Deep linear net, mean cos(G, G′) BN − none: {base.brief(dln, 3)}: "
                + ("BN lowers the cosine, as Santurkar Fig. 3 reports (G and G′ nearly uncorrelated with BN)."
                   if reproduced else "Santurkar's finding that G and G′ become nearly uncorrelated with BN did not "
                   "reproduce here."))
    summary = (f"Per setting (cos(G, G′) BN − none for the VGG conv layers; log ratio of the relative percentile "
               f"drift for Ioffe's MLP): {parts}. {dln_text} The verdict depends on the definition of ICS: "
               f"Ioffe's (a layer's input distribution moves) and Santurkar's (a layer's gradient changes when the "
               f"layers below it update) are different quantities. Verdict: {decision.verdict}.")
    runs = plan.config["runs"]
    mlp, vgg, dln = runs["mlp"]["config"], runs["vgg"]["config"], runs["dln"]["config"]
    method = (f"Ioffe MLP on {mlp['dataset']}, SGD lr {mlp['lr']}, batch {mlp['batch_size']}, {mlp['steps']} steps, "
              f"{len(plan.config['seeds']['mlp'])} seeds, percentiles of 5 units of the last sigmoid input; VGG "
              f"({vgg['model_kwargs']['config']}) on {vgg['dataset']}, SGD lr {vgg['lr']}, {vgg['steps']} steps, "
              f"{len(plan.config['seeds']['vgg'])} seeds; deep linear net, full-batch GD lr {dln['lr']:g}, "
              f"{dln['steps']} steps; ICS of every weight layer, BN with batch statistics.")
    caveats = ["The experiment measures whether BN reduces ICS; whether ICS reduction is *why* BN helps is C04's "
               "question.",
               "Raw ‖G − G′‖ scales with the gradient's size, which BN changes; the vote uses the scale-free cosine, "
               "the relative distance is secondary.",
               "A run that diverged, or a probe with no finite number, counts as the worst outcome for its net in the "
               "primary endpoint (cosine −1; drift ratio ±inf, both nets failed -> a tie), never as a missing seed; "
               "the secondary results keep what was measured up to the divergence (a seed with no finite number is "
               "left out of them)."]
    if plan.scale != "paper":
        caveats.append(f"Scale '{plan.scale}' is far below the papers' (Ioffe: 50k steps on MNIST; Santurkar: VGG on "
                       "CIFAR-10 for 15k steps): short CPU runs can show effects of different size, or none.")
    return base.Description(summary, method, caveats)
