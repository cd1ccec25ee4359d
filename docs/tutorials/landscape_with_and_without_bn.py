# %% [markdown]
# # The loss landscape with and without BN
#
# The visualisation the explanation offers at its end. Train a BN net and the same net without BN under identical
# settings, draw the training loss around each on two filter-normalised random directions (Li et al. 2018), with BN
# in train mode (batch statistics) and eval mode (running statistics), all on one colour scale, and read them.
# Small budget (BNLAB_TUTORIAL_STEPS training steps, default 300; the tests run 30).

# %%
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from bnlab.data import load_dataset
from bnlab.landscape import random_directions, random_plane, roughness
from bnlab.landscape.directions import model_origin
from bnlab.models import build_model
from bnlab.report.figures import save_figure

steps = int(os.environ.get("BNLAB_TUTORIAL_STEPS", "300"))
data = load_dataset("digits")
batch = (data.train_x[:256], data.train_y[:256])
loss_fn = nn.CrossEntropyLoss()


def trained(norm: str) -> nn.Module:
    torch.manual_seed(0)  # the same init stream and the same batches for both nets
    net = build_model("vgg", norm=norm, in_shape=data.in_shape, num_classes=data.num_classes, config="narrow")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(data.train_x), (64,), generator=gen)
        opt.zero_grad()
        loss_fn(net(data.train_x[idx]), data.train_y[idx]).backward()
        opt.step()
    return net


nets = {"BN": trained("bn"), "no BN": trained("none")}

# %% [markdown]
# ## One plane per net and BN mode
# Filter normalisation scales each direction's filter to the norm of the net's own filter, so a BN net's surface
# does not depend on how large its scale-invariant filters grew; 1-D parameters (biases, γ, β) get no component.

# %%
surfaces = {}
for label, net in nets.items():
    dirs = random_directions(model_origin(net), 2, 1000)
    for mode in ("train", "eval") if label == "BN" else ("train",):
        s = random_plane(net, loss_fn, batch, radius=1.0, steps=11, bn_mode=mode, directions=dirs, seed=1000)
        surfaces[f"{label}, BN mode {mode}" if label == "BN" else label] = s
        r = roughness(s.loss, s.x, s.y, 1.0)
        print(f"{label:5s} {mode:5s}: centre loss {float(s.loss[5, 5]):.3f}, roughness {r:.3g}")
        assert torch.isfinite(torch.as_tensor(s.loss)).all()

# %% [markdown]
# ## Drawn side by side, on one colour scale
# Identical axes, contour levels and a log colour scale in every panel: a flatter, wider basin is visibly flatter.

# %%
figure = {"id": "landscapes", "kind": "contours", "title": "2-D loss landscapes", "caption": "",
          "data": {"panels": [{"title": name, "x": s.x.tolist(), "y": s.y.tolist(), "z": s.loss.tolist()}
                              for name, s in surfaces.items()], "levels": 20, "zscale": "log", "same_scale": True}}
path = save_figure(figure, Path(tempfile.mkdtemp(prefix="bnlab-tutorial-")) / "landscapes.png")
print("figure written to", path)
assert path.stat().st_size > 0
try:  # in a notebook (the documentation site runs this file as one): show it inline
    from IPython.display import Image, display

    display(Image(filename=str(path)))
except ImportError:  # run as a plain script: the file is the output
    pass

# %% [markdown]
# ## How to read them
# The claim (C14) is that without BN the landscape is rugged and with BN flat and smooth. `bnlab audit` measures it
# over seeds: the roughness ratio no BN / BN in train mode is its primary endpoint, and the eval-mode surface, where
# BN's statistics are frozen, is reported as a finding of its own. A single pair of slices, as here, shows a tiny
# part of a high-dimensional landscape: read the audit's verdict, not one picture.
