# %% [markdown]
# # Curvature and BN's mode: top eigenvalues, trace and density in train and eval mode
#
# PyHessian measures BN nets in eval mode only; bnlab measures both, because they are different functions of the
# weights. Small budget (BNLAB_TUTORIAL_STEPS, default 100 training steps) so the tutorial runs in seconds.

# %%
import os

import torch
import torch.nn.functional as F

from bnlab.data import load_dataset
from bnlab.models import build_model
from bnlab.probes.hessian import estimate_trace, extremes, hessian_operator, lanczos_eigenpairs, slq_density

steps = int(os.environ.get("BNLAB_TUTORIAL_STEPS", "100"))
torch.manual_seed(0)
data = load_dataset("digits")
net = build_model("vgg", norm="bn", in_shape=data.in_shape, num_classes=data.num_classes, config="narrow")
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for _ in range(steps):
    idx = torch.randint(0, len(data.train_x), (64,))
    opt.zero_grad()
    F.cross_entropy(net(data.train_x[idx]), data.train_y[idx]).backward()
    opt.step()
batch = (data.train_x[:128], data.train_y[:128])

# %% [markdown]
# ## The same net, two functions
# `train`: BN normalises with the statistics of the batch (the function SGD differentiates); `eval`: with the
# running statistics.

# %%
results = {}
for mode in ("train", "eval"):
    with hessian_operator(net, F.cross_entropy, batch, bn_mode=mode) as op:
        top = lanczos_eigenpairs(op, k=3, tol=1e-4)
        ext = extremes(op, tol=1e-3)
        tr = estimate_trace(op, rtol=0.05, max_samples=40)
        dens = slq_density(op, runs=2, steps=30)
    results[mode] = top.eigenvalues
    area = float(torch.trapezoid(torch.as_tensor(dens.density), torch.as_tensor(dens.grid)))
    print(f"BN mode {mode}: top-3 {[round(v, 4) for v in top.eigenvalues]}, λ_min/λ_max {ext['ratio']:.3f}, "
          f"trace {tr.trace:.3g} ± {tr.se:.2g}, density integrates to {area:.3f}")
    assert abs(area - 1) < 1e-6
    assert top.converged and top.eigenvalues[0] >= top.eigenvalues[1] >= top.eigenvalues[2]

# %% [markdown]
# ## Why they differ
# In train mode the loss depends on the weights also through the batch statistics, and BN removes the directions
# that only rescale a channel (scale invariance): the curvature along them is zero. In eval mode the running
# statistics are constants, so rescaling a filter does change the output. The two spectra are not comparable
# numbers for "the sharpness of the net": say which mode you measured.

# %%
assert results["train"][0] != results["eval"][0]
print("λ_max eval / train =", results["eval"][0] / results["train"][0])
