# %% [markdown]
# # Santurkar's probes on your own model
#
# ICS (Santurkar et al. 2018, Def. 2.1), loss variation, gradient predictiveness and effective β-smoothness along
# the gradient (their Fig. 4) work on any `nn.Module`: here a small residual CNN defined in this file, with BN and
# with its BN layers replaced by identities, trained alike. Every probe leaves the model exactly as it found it
# (parameters, buffers, `.grad`, modes, RNG). Small budget (BNLAB_TUTORIAL_STEPS, default 200; the tests run 30).

# %%
import os

import torch
from torch import nn

from bnlab.data import load_dataset
from bnlab.probes.along_gradient import along_gradient
from bnlab.probes.ics import ics


class Block(nn.Module):
    def __init__(self, c: int, norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=not norm)
        self.norm = nn.BatchNorm2d(c) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.conv(x)))  # (N, C, H, W) -> (N, C, H, W)


def my_model(norm: bool) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), Block(8, norm), Block(8, norm), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


steps = int(os.environ.get("BNLAB_TUTORIAL_STEPS", "200"))
data = load_dataset("digits")
loss_fn = nn.CrossEntropyLoss()
etas = [0.05, 0.1, 0.2, 0.4]  # step sizes along −g; Santurkar's range scaled to this net's learning rate 0.1

# %% [markdown]
# ## Train both, probing as we go
# At a few points: ICS of every layer (how much the layer's gradient changes when the layers before it take their
# update) and the loss and gradient along −g.

# %%
records = {}
for label, norm in (("BN", True), ("no BN", False)):
    torch.manual_seed(0)
    net = my_model(norm)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    rec = []
    for step in range(steps + 1):
        idx = torch.randint(0, len(data.train_x), (64,), generator=gen)
        batch = (data.train_x[idx], data.train_y[idx])
        if step % max(steps // 3, 1) == 0:
            shift = ics(net, loss_fn, batch, opt)
            along = along_gradient(net, loss_fn, batch, etas)
            rec.append({"step": step, "mean_cosine": sum(s.cosine for s in shift.layers) / len(shift.layers),
                        "loss_variation": along.loss_variation,
                        "gradient_predictiveness": along.gradient_predictiveness,
                        "beta_smoothness": along.beta_smoothness})
        net.train()
        opt.zero_grad()
        loss_fn(net(batch[0]), batch[1]).backward()
        opt.step()
    records[label] = rec

for label, rec in records.items():
    for r in rec:
        print(f"{label:5s} step {r['step']:4d}: ICS cosine {r['mean_cosine']:.3f}, loss variation "
              f"{r['loss_variation']:.3g}, gradient predictiveness {r['gradient_predictiveness']:.3g}, "
              f"β-smoothness {r['beta_smoothness']:.3g}")
        assert -1 <= r["mean_cosine"] <= 1 and r["loss_variation"] >= 0 and r["gradient_predictiveness"] >= 0

# %% [markdown]
# ## Reading the numbers
# A cosine near 1 means a layer's gradient barely changes when the layers before it move (little ICS in Santurkar's
# sense); a smaller loss variation and gradient predictiveness mean a smoother landscape along the gradient. The
# audit (C03, C05, C06) turns such numbers into verdicts over seeds, with one pre-registered endpoint per claim; a
# single run as here is an illustration, not evidence.
