"""C03 — "BN works because it reduces internal covariate shift" (Ioffe & Szegedy 2015), tested with both measures.

(a) Distributional (Ioffe Fig. 1): Ioffe's 3 × 100 sigmoid MLP with and without BN; over training, the 15/50/85th
    percentiles of five units of the last hidden layer's sigmoid input on held-out images, and test accuracy.
    Per seed, the *percentile drift* is the range over training of each percentile, averaged over units and
    percentiles (`probed_training.percentile_drift`); effect a = log(drift without BN / drift with BN).
(b) Santurkar Def. 2.1 (Fig. 3): per weight layer, G vs G′ (its gradient after only the earlier layers took the
    run's actual optimizer step, same batch): cos(G, G′) and ‖G − G′‖ / ‖G‖, averaged over layers (the first left
    out: G′ = G there) and probe times, for the VGG and the 25-layer deep linear net, with and without BN.
    Effects: cos_BN − cos_none and log(rel. distance none / rel. distance BN): positive = BN reduces ICS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlab.experiments.base import ClaimResult, Figure, KeyNumber, Plan, combine_verdicts, seeds_for, verdict_from_ci
from bnlab.experiments.probed_training import (
    finite_ci,
    ics_means,
    log_ratio,
    percentile_drift,
    run_settings,
    run_trial,
    seed_band,
)

CLAIM_ID = "C03"
TITLE = "BN reduces internal covariate shift"
NORMS: tuple[str, ...] = ("bn", "none")

RULE = (
    "Each measure decides on its own, over seeds, by the house rule (95% CI of the paired BN-vs-no-BN effect wholly "
    "above 0: 'supported' = BN reduces ICS; wholly below 0: 'refuted'; otherwise 'inconclusive'). "
    "Distributional verdict: effect a = log(percentile drift without BN / with BN), Ioffe MLP. "
    "Gradient verdict (Santurkar Def. 2.1): combine_verdicts of four effects — VGG and DLN, each "
    "cos(G,G′)_BN − cos(G,G′)_none and log(‖G−G′‖/‖G‖ none / BN). "
    "Overall: both measures agree -> that verdict; one says 'supported' (reduced) while the other says 'refuted' or "
    "'inconclusive' (not reduced) -> 'mixed'; otherwise combine_verdicts of the two."
)


def plan(scale: str, seeds: int) -> Plan:
    seed_list = seeds_for(seeds)
    trials = [run_trial(CLAIM_ID, family, scale, norm, seed)
              for family in ("mlp", "vgg", "dln") for norm in NORMS for seed in seed_list]
    config = {"runs": {f: run_settings(f, scale) for f in ("mlp", "vgg", "dln")}, "norms": list(NORMS)}
    return Plan(claim=CLAIM_ID, scale=scale, seeds=seed_list, config=config, trials=tuple(trials))


def _get(results: Mapping[str, dict], family: str, norm: str, seed: int) -> dict[str, Any]:
    return results[f"{family}/{norm}/seed={seed}"]


def overall_verdict(distributional: str, gradient: str) -> str:
    """The rule's last sentence (see RULE)."""
    if distributional == gradient:
        return distributional
    pair = {distributional, gradient}
    if "supported" in pair and pair - {"supported"} <= {"refuted", "inconclusive"}:
        return "mixed"
    return combine_verdicts([distributional, gradient])


def _ci_dict(ci: tuple) -> dict[str, Any]:
    return {"mean": ci[0], "ci_low": ci[1], "ci_high": ci[2]}


def summarize(plan: Plan, results: Mapping[str, dict]) -> ClaimResult:
    seeds = plan.seeds
    metrics: dict[str, Any] = {}
    # (a) distributional -----------------------------------------------------------------------------------
    drift = {n: [percentile_drift(_get(results, "mlp", n, s)["activations"]) for s in seeds] for n in NORMS}
    effect_a = [log_ratio(a, b) for a, b in zip(drift["none"], drift["bn"])]
    ci_a = finite_ci(effect_a)
    verdict_a = verdict_from_ci(ci_a[1], ci_a[2])
    acc = {n: [_get(results, "mlp", n, s)["final"].get("test_acc") for s in seeds] for n in NORMS}
    metrics["distributional"] = {"percentile_drift": drift, "effect_log_ratio": _ci_dict(ci_a),
                                 "verdict": verdict_a, "final_test_acc": acc}
    # (b) gradient (Santurkar Def. 2.1) ---------------------------------------------------------------------
    verdicts_b: dict[str, str] = {}
    grad_metrics: dict[str, Any] = {}
    key_number = None
    for family in ("vgg", "dln"):
        means = {n: [ics_means(_get(results, family, n, s)["ics"]) for s in seeds] for n in NORMS}
        d_cos = [b["cosine"] - a["cosine"] for b, a in zip(means["bn"], means["none"])]
        d_rel = [log_ratio(a["relative_distance"], b["relative_distance"]) for b, a in zip(means["bn"], means["none"])]
        ci_cos, ci_rel = finite_ci(d_cos), finite_ci(d_rel)
        verdicts_b[f"{family}_cosine"] = verdict_from_ci(ci_cos[1], ci_cos[2])
        verdicts_b[f"{family}_relative_distance"] = verdict_from_ci(ci_rel[1], ci_rel[2])
        grad_metrics[family] = {
            "mean_cosine": {n: [m["cosine"] for m in means[n]] for n in NORMS},
            "mean_relative_distance": {n: [m["relative_distance"] for m in means[n]] for n in NORMS},
            "mean_distance": {n: [m["distance"] for m in means[n]] for n in NORMS},
            "cosine_bn_minus_none": _ci_dict(ci_cos), "log_rel_distance_none_over_bn": _ci_dict(ci_rel),
        }
        if family == "vgg":
            key_number = KeyNumber("VGG: cos(G,G′) with BN − without", ci_cos[0], ci_cos[1], ci_cos[2])
    verdict_b = combine_verdicts(list(verdicts_b.values()))
    metrics["gradient"] = {**grad_metrics, "verdicts": verdicts_b, "verdict": verdict_b}
    verdict = overall_verdict(verdict_a, verdict_b)
    metrics["verdicts"] = {"distributional": verdict_a, "gradient": verdict_b, "overall": verdict}

    summary = (
        f"Distributional measure (Ioffe Fig. 1): the sigmoid-input percentiles drift "
        f"{'less' if ci_a[0] > 0 else 'more'} with BN (log ratio none/BN {ci_a[0]:+.2f}) -> {verdict_a}. "
        f"Gradient measure (Santurkar Def. 2.1): cos(G,G′) BN − none = "
        f"{grad_metrics['vgg']['cosine_bn_minus_none']['mean']:+.3f} (VGG), "
        f"{grad_metrics['dln']['cosine_bn_minus_none']['mean']:+.3f} (DLN) -> {verdict_b}. Overall: {verdict}."
    )
    return ClaimResult(
        id=CLAIM_ID, title=TITLE, verdict=verdict, rule=RULE, summary=summary,
        method=_method(plan), key_number=key_number, metrics=metrics,
        figures=_figures(plan, results), caveats=_caveats(plan),
    )


def _method(plan: Plan) -> str:
    runs = plan.config["runs"]
    mlp, vgg, dln = runs["mlp"], runs["vgg"], runs["dln"]
    return (
        f"(a) Ioffe MLP (3 hidden sigmoid layers) on {mlp['config']['dataset']}, SGD lr {mlp['config']['lr']}, "
        f"batch {mlp['config']['batch_size']}, {mlp['config']['steps']} steps, BN vs none; percentiles of 5 units of "
        f"the last sigmoid input on {mlp['activation_inputs']} held-out examples (BN with batch statistics) every "
        f"{mlp['probe_every']} steps. (b) VGG ({vgg['config']['model_kwargs']['config']}) on "
        f"{vgg['config']['dataset']}, SGD lr {vgg['config']['lr']}, batch {vgg['config']['batch_size']}, "
        f"{vgg['config']['steps']} steps; deep linear net "
        f"({dln['config'].get('model_kwargs', {}).get('depth', 25)} layers) on dln_regression, full-batch GD lr "
        f"{dln['config']['lr']}, {dln['config']['steps']} steps; ICS of every "
        f"weight layer every {vgg['probe_every']}/{dln['probe_every']} steps, BN with batch statistics, "
        f"{len(plan.seeds)} seeds."
    )


def _caveats(plan: Plan) -> list[str]:
    out = [
        "The experiment measures whether BN reduces ICS; whether ICS reduction is *why* BN helps is C04's question.",
        "Raw ‖G − G′‖ scales with the gradient's size, which BN changes; the verdict uses the scale-free cosine and "
        "relative distance, the raw distances are in the metrics.",
    ]
    if plan.scale != "paper":
        out.append(
            f"Scale '{plan.scale}' is far below the papers' (Ioffe: 50k steps on MNIST; Santurkar: VGG on CIFAR-10 for "
            "15k steps, DLN for 10k steps at lr 1e-6): short CPU runs on small data sets can show effects of "
            "different size, or none, and the DLN uses a larger learning rate so that it trains at all in "
            f"{plan.config['runs']['dln']['config']['steps']} steps.")
    return out


def _figures(plan: Plan, results: Mapping[str, dict]) -> list[Figure]:
    seeds = plan.seeds
    labels = {"bn": "BN", "none": "no BN"}
    mlp = {n: [_get(results, "mlp", n, s) for s in seeds] for n in NORMS}
    acc_panel = {"title": "Ioffe MLP: test accuracy", "xlabel": "step", "ylabel": "test accuracy",
                 "series": [seed_band([r["curves"]["eval_step"] for r in mlp[n]],
                                      [r["curves"]["test_acc"] for r in mlp[n]], labels[n]) for n in NORMS]}
    pct_panels = []
    for n in NORMS:
        act = mlp[n][0]["activations"]
        pct_panels.append({
            "title": f"{labels[n]}: sigmoid input of unit {act['units'][0]} (seed {seeds[0]})", "xlabel": "step",
            "ylabel": "percentile of the sigmoid input",
            "series": [{"label": f"{p:g}th", "x": act["step"], "y": [q[0][j] for q in act["unit_percentiles"]]}
                       for j, p in enumerate(act["percentiles"])]})
    figs = [Figure("ioffe_fig1a", "lines", "Ioffe Fig. 1a: test accuracy, MLP with and without BN",
                   "Test accuracy over training (mean over seeds, band min–max).", {"panels": [acc_panel]}),
            Figure("ioffe_fig1bc", "lines", "Ioffe Fig. 1b, c: a sigmoid input's percentiles over training",
                   "15/50/85th percentiles of one last-hidden-layer sigmoid input on held-out examples (first seed); "
                   "same y scale in both panels.", {"panels": pct_panels, "sharey": True})]
    for family, name in (("vgg", "VGG"), ("dln", "deep linear net")):
        runs = {n: [_get(results, family, n, s)["ics"] for s in seeds] for n in NORMS}
        panels = []
        for key, ylabel in (("distance", "‖G − G′‖₂ (mean over layers)"), ("cosine", "cos(G, G′) (mean over layers)")):
            series = []
            for n in NORMS:
                ys = [[_layer_mean(row) for row in r[key]] for r in runs[n]]
                series.append(seed_band([r["step"] for r in runs[n]], ys, labels[n]))
            panels.append({"title": f"{name}: {key}", "xlabel": "step", "ylabel": ylabel, "series": series,
                           **({"yscale": "log"} if key == "distance" else {})})
        layers = runs["bn"][0]["layers"][1:]
        bars = {"title": f"{name}: cos(G, G′) per layer (mean over time and seeds)", "ylabel": "cos(G, G′)",
                "categories": [str(i + 2) for i in range(len(layers))],
                "groups": [{"label": labels[n], "values": _per_layer(runs[n])} for n in NORMS]}
        figs.append(Figure(f"santurkar_fig3_{family}", "lines", f"Santurkar Fig. 3: ICS over training, {name}",
                           "G: a layer's gradient; G′: the same layer's gradient on the same batch after the earlier "
                           "layers took the run's optimizer step. Mean over layers 2..L; band: min–max over seeds.",
                           {"panels": panels}))
        figs.append(Figure(f"ics_layers_{family}", "bars", f"ICS per layer, {name}",
                           "cos(G, G′) per weight layer (layer 1 left out: G′ = G), averaged over probe times and "
                           "seeds; higher = less internal covariate shift.", {"panels": [bars]}))
    return figs


def _layer_mean(row: list) -> float | None:
    vals = [v for v in row[1:] if v is not None]
    return sum(vals) / len(vals) if vals else None


def _per_layer(runs: list[dict[str, Any]]) -> list[float | None]:
    n_layers = len(runs[0]["layers"])
    out = []
    for j in range(1, n_layers):
        vals = [row[j] for r in runs for row in r["cosine"] if row[j] is not None]
        out.append(sum(vals) / len(vals) if vals else None)
    return out
