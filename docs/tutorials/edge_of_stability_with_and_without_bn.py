# %% [markdown]
# # The edge of stability with and without BN, under SGD
#
# Gradient descent with step size η is stable on a quadratic only where its curvature is below 2/η. Cohen et al.
# (2021, "Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability") found that full-batch GD
# on a neural net drives its sharpness λ_max (the top Hessian eigenvalue) *up* during training — *progressive
# sharpening* — until it reaches 2/η, and then hovers there while the loss keeps falling, non-monotonically.
# Under mini-batch SGD, Andreyev & Beneventano (2024, "Edge of Stochastic Stability") show that the quantity that
# settles at 2/η is the *batch sharpness* E_B[g_Bᵀ H_B g_B / ‖g_B‖²] (the curvature of each mini-batch's loss
# along that batch's own gradient, i.e. along the step SGD takes), while the full-batch λ_max stays below 2/η.
#
# This tutorial trains a small tanh MLP on sklearn's digits with plain SGD at η = 0.5 (2/η = 4), once with BN
# and once without (its twin: the same net with the BN layers left out), and measures in its own training loop
# with `bnlab.workflows.sharpness_tracker.SharpnessTracker`: at every 10th step, on the SGD batch about to be
# used, λ_max of that batch's Hessian, the batch's Rayleigh quotient along its gradient (whose mean over steps
# estimates the batch sharpness) and every eigenvalue above 2/η; for the BN net in both BN modes. Given
# `full_batch=train`, it also measures the full-batch λ_max on the whole training set, in the same BN mode. It runs
# on a CPU in under a minute.

# %%
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.data import load_dataset
from bnlab.report.figures import save_figure
from bnlab.workflows.sharpness_tracker import SharpnessTracker

lr, batch_size, steps, every = 0.5, 64, 150, 10
data = load_dataset("digits", train_size=512)
train = (data.train_x, data.train_y)  # (512, 1, 8, 8), (512,)


def mlp(bn: bool) -> nn.Module:
    """64 -> 32 -> 32 -> 10, tanh; with BN before each tanh (and no bias there: BN cancels it) or without."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    for d_in, d_out in ((64, 32), (32, 32)):
        layers += [nn.Linear(d_in, d_out, bias=not bn), *([nn.BatchNorm1d(d_out)] if bn else []), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(32, 10))


# %% [markdown]
# ## Train both nets, the tracker in the loop
# `tracker.step(model, batch)` measures at calls 0, 10, 20, … and leaves the model exactly as it was (parameters,
# buffers, `.grad`, modes, RNG), so the SGD run is the same with or without it. `max_k=4` caps how many
# eigenvalues above 2/η it resolves per probe (eval mode can have more; `converged` then says so), and `tol=1e-2`
# (a 1 % residual) is plenty for a figure. `full_batch=train` adds `full_batch_lambda_max` to each record: λ_max of
# the loss on all 512 training examples (in BN mode train, with BN statistics over those 512:
# `full_batch_bn_batch_size`).

# %%
out = tempfile.mkdtemp()
runs = {}
for name, bn in (("no BN", False), ("BN", True)):
    model = mlp(bn)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    modes = ("train", "eval") if bn else ("train",)
    tracker = SharpnessTracker(f"{out}/{name}", F.cross_entropy, lr=lr, every=every, bn_modes=modes, max_k=4,
                               tol=1e-2, full_batch=train)
    gen = torch.Generator().manual_seed(1)
    rows: list[dict] = []
    for step in range(steps):
        idx = torch.randperm(len(train[0]), generator=gen)[:batch_size]
        batch = (train[0][idx], train[1][idx])
        rows += [{**rec, "step": step} for rec in tracker.step(model, batch) or []]
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()
    runs[name] = {"rows": rows, "figure": tracker.close()}
print("the tracker's own figures:", *(r["figure"] for r in runs.values()))

# %% [markdown]
# ## What the tracker recorded
# Per net and BN mode: the batch λ_max and the full-batch λ_max at step 0 and their peaks, then over the second
# half of training (steps ≥ 75) the mean of the batch Rayleigh quotients — the batch-sharpness estimate — the mean
# batch λ_max and the mean full-batch λ_max, each as a number and as a fraction of 2/η = 4.

# %%
two_over_eta = 2 / lr
summary = {}
for name, run in runs.items():
    for mode in sorted({r["bn_mode"] for r in run["rows"]}, reverse=True):
        rows = [r for r in run["rows"] if r["bn_mode"] == mode]
        late = [r for r in rows if r["step"] >= steps // 2]
        s = {"start": rows[0]["lambda_max"], "peak": max(r["lambda_max"] for r in rows),
             "batch_sharpness": statistics.mean(r["batch_sharpness"] for r in late),
             "batch_lambda_max": statistics.mean(r["lambda_max"] for r in late),
             "full_lambda_max": statistics.mean(r["full_batch_lambda_max"] for r in late),
             "full_start": rows[0]["full_batch_lambda_max"],
             "full_peak": max(r["full_batch_lambda_max"] for r in rows),
             "above": max(len(r["above_threshold"]) for r in rows), "bn_batch_size": rows[0]["bn_batch_size"]}
        summary[name, mode] = s
        stats = f"BN statistics over {s['bn_batch_size']} examples" if s["bn_batch_size"] else "no batch statistics"
        print(f"{name:5s} mode {mode:5s} ({stats}): batch λ_max "
              f"{s['start']:.2f} at step 0, peak {s['peak']:.2f}; full-batch λ_max {s['full_start']:.2f} at step 0, "
              f"peak {s['full_peak']:.2f}; late means: batch sharpness "
              f"{s['batch_sharpness']:.2f} ({s['batch_sharpness'] / two_over_eta:.0%} of 2/η), batch λ_max "
              f"{s['batch_lambda_max']:.2f} ({s['batch_lambda_max'] / two_over_eta:.0%}), full-batch λ_max "
              f"{s['full_lambda_max']:.2f} ({s['full_lambda_max'] / two_over_eta:.0%}); most eigenvalues of the SGD "
              f"batch above 2/η at one probe: {s['above']}{' (the cap max_k)' if s['above'] == 4 else ''}")

# %% [markdown]
# ## Drawn: every sharpness beside 2/η
# One panel per net and BN mode: the batch λ_max and the full-batch λ_max at each probe, the running mean of the
# batch Rayleigh quotients (the batch-sharpness estimate so far) and the line 2/η. (The tracker draws the same
# per net in the figures printed above, one file per net, with the BN net's spherical sharpness per weight in a
# panel beside each BN mode; here both nets share one figure.)

# %%
panels = []
for name, mode in summary:
    rows = [r for r in runs[name]["rows"] if r["bn_mode"] == mode]
    x = [r["step"] for r in rows]
    quotients = [r["batch_sharpness"] for r in rows]
    running = [statistics.mean(quotients[: i + 1]) for i in range(len(quotients))]
    panels.append({"title": f"{name}, BN mode {mode}" if name == "BN" else name, "xlabel": "SGD step",
                   "ylabel": "sharpness", "series": [
                       {"label": "λ_max of the SGD batch", "x": x, "y": [r["lambda_max"] for r in rows]},
                       {"label": "λ_max, full batch", "x": x, "y": [r["full_batch_lambda_max"] for r in rows]},
                       {"label": "batch sharpness (running mean)", "x": x, "y": running},
                       {"label": "2/η", "x": [x[0], x[-1]], "y": [two_over_eta] * 2}]})
figure = {"id": "edge_of_stability", "kind": "lines", "title": f"SGD at η = {lr}: sharpness and 2/η",
          "caption": "", "data": {"panels": panels}}
path = save_figure(figure, Path(out) / "edge_of_stability.png")
print("figure written to", path)
assert path.stat().st_size > 0
try:  # in a notebook (the documentation site runs this file as one): show it inline
    from IPython.display import Image, display

    display(Image(filename=str(path)))
except ImportError:  # run as a plain script: the file is the output
    pass

# %% [markdown]
# ## What one sees, and what it means
# Each statement below is asserted on the numbers printed above, so the page cannot say what its run did not show.
#
# **Without BN: progressive sharpening, then the edge.** The batch λ_max and the full-batch λ_max both start far
# below 2/η, rise to it and then hover around it, overshooting and falling back: the edge
# of stability of Cohen et al. Later in the run (steps ≥ 75) the full-batch λ_max drifts below 2/η while the
# batch λ_max stays at it: the separation Andreyev & Beneventano describe for SGD, here late and modest (the
# fractions are printed above). The batch-sharpness estimate climbs towards 2/η but in this short, small run it
# settles *below* 2/η, not at it; it is the batch λ_max, which bounds each Rayleigh quotient from above, that sits
# at 2/η here.

# %%
no_bn = summary["no BN", "train"]
assert no_bn["start"] < 0.5 * two_over_eta < two_over_eta < no_bn["peak"]  # starts well below the edge, crosses it
assert no_bn["full_start"] < 0.5 * two_over_eta and no_bn["full_peak"] > 0.9 * two_over_eta  # full batch too
assert 0.75 * two_over_eta < no_bn["batch_lambda_max"] < 1.25 * two_over_eta  # ... and hovers at it
assert no_bn["full_lambda_max"] < min(two_over_eta, no_bn["batch_lambda_max"])
assert 0.5 * two_over_eta < no_bn["batch_sharpness"] < two_over_eta

# %% [markdown]
# **With BN, in train mode** (the function SGD differentiates: each batch normalised by its own statistics): the
# SGD batch's λ_max already exceeds 2/η at initialisation and then hovers around it, with spikes — there is no
# sharpening phase to watch, the net is at the edge from the start — and the batch-sharpness estimate again
# settles below 2/η. The full-batch λ_max, which here also means BN statistics over the whole training set, starts
# below 2/η and falls to a small fraction of it: the SGD step is held at the edge by the curvature of the
# *mini-batch* function, with its batch statistics, not by the full-batch one. This is the gap Andreyev &
# Beneventano describe, and with BN it is wide, because the full-batch and mini-batch losses are different
# functions of the weights.

# %%
bn_train = summary["BN", "train"]
assert bn_train["start"] > two_over_eta  # at the edge from step 0
assert 0.75 * two_over_eta < bn_train["batch_lambda_max"] < 1.5 * two_over_eta
assert bn_train["full_start"] < two_over_eta
assert bn_train["full_lambda_max"] < 0.5 * two_over_eta < bn_train["batch_sharpness"] < two_over_eta

# %% [markdown]
# **With BN, in eval mode** (the running statistics, the function the net is deployed as): every sharpness here
# ends far above 2/η. Nothing in SGD bounds it, because SGD never steps on this function; a step of size η on it
# would diverge. This is why every bnlab sharpness number records its BN mode and the batch size behind its BN
# statistics: "the sharpness of a BN net" is not one number, and only the train-mode one can be compared with
# 2/η.

# %%
bn_eval = summary["BN", "eval"]
assert bn_eval["start"] < two_over_eta
assert 1.5 * two_over_eta < min(bn_eval["batch_sharpness"], bn_eval["full_lambda_max"])
print(f"late full-batch λ_max, eval / train mode: {bn_eval['full_lambda_max'] / bn_train['full_lambda_max']:.1f}×")

# %% [markdown]
# ## Spherical sharpness: the part of BN's curvature that rescaling cannot change
# A weight W that feeds a BN layer makes the train-mode loss scale-invariant in W: L(αW) = L(W), so its Hessian
# block scales as 1/α² and its raw λ_max(H_WW) can be moved at will by rescaling W without changing the function.
# Under SGD without weight decay ‖W‖ only grows (the gradient of a scale-invariant loss is orthogonal to W, so a
# step adds η²‖g‖² to ‖W‖²), which lowers the raw number by itself. For a BN net the tracker also records, per
# such weight, λ_max(H_WW)·‖W‖² (Lyu, Li & Arora 2022), which rescaling does not change (the `spherical` field;
# on by default when the model has BN). Here, in BN mode train:

# %%
train_rows = [r for r in runs["BN"]["rows"] if r["bn_mode"] == "train"]
late_rows = [r for r in train_rows if r["step"] >= steps // 2]
for i, entry in enumerate(train_rows[0]["spherical"]):
    norms = [r["spherical"][i]["weight_norm_sq"] for r in train_rows]
    assert all(b >= a * (1 - 1e-4) for a, b in zip(norms, norms[1:]))  # ‖W‖² never shrinks (up to BN's ε)
    raw_late = statistics.mean(r["spherical"][i]["top_eigenvalue"] for r in late_rows)
    inv_late = statistics.mean(r["spherical"][i]["invariant"] for r in late_rows)
    print(f"{entry['param']}: ‖W‖² {norms[0]:.2f} -> {norms[-1]:.2f}; λ_max(H_WW) {entry['top_eigenvalue']:.2f} at "
          f"step 0, {raw_late:.2f} late (mean); λ_max·‖W‖² {entry['invariant']:.1f} at step 0, {inv_late:.1f} late")

# %% [markdown]
# Between two probes of one run, or between two runs whose weights grew differently, compare the spherical
# numbers: a change in them is a change in the function's curvature, while a change in the raw λ_max(H_WW) alone
# may be nothing but the weights' norm.
