# %% [markdown]
# # BN from scratch: the forward pass, the Jacobian and scale invariance, checked against autograd
#
# A lecture in four cells. Every number printed is also asserted, so this tutorial fails (in `make test`) the day
# the code stops doing what the text says. Run it as a script or open it as a notebook with jupytext.

# %%
import torch

from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.jacobian import autograd_jacobian, bn_jacobian, jacobian_spectrum

torch.manual_seed(0)
x = torch.randn(32, 4, dtype=torch.float64) * 3 + 1  # (N, C): a batch of 32 examples, 4 channels

# %% [markdown]
# ## 1. The forward pass (Ioffe & Szegedy, Alg. 1)
# Per channel: μ = mean, σ² = biased variance over the batch, x̂ = (x − μ)/√(σ² + ε), y = γ x̂ + β.

# %%
bn = BatchNorm(4).double().train()
y = bn(x).detach()
by_hand = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
print("max |BN(x) − by hand| =", float((y - by_hand).abs().max()))
assert torch.allclose(y, by_hand, atol=1e-12)
assert torch.allclose(y, torch.nn.functional.batch_norm(x, None, None, training=True), atol=1e-12)

# %% [markdown]
# ## 2. The Jacobian of one channel: (1/σ)(I − 11ᵀ/m − x̂x̂ᵀ/m)
# It centres (kills the direction 1), removes the component along x̂ and rescales by 1/σ: the gradient that reaches
# the layer below is projected and rescaled (claim C08).

# %%
feature = x[:, 0]  # (m,) one channel over the batch
explicit = bn_jacobian(feature)  # (m, m)
reference = autograd_jacobian(feature)  # the same through autograd
print("max |formula − autograd| =", float((explicit - reference).abs().max()))
assert torch.allclose(explicit, reference, atol=1e-10)

spec = jacobian_spectrum(feature)
print("eigenvalues: smallest two", spec.eigenvalues[:2].tolist(), "the rest ≈ 1/σ =", 1 / spec.s)
assert spec.max_error < 1e-10 and spec.ones_alignment > 0.999999

# %% [markdown]
# ## 3. Scale invariance: BN(αWx) = BN(Wx), and the gradient scales by 1/α
# So the weights feeding BN can grow without changing the function, and their effective learning rate is η/‖W‖²
# (claim C09).

# %%
lin = torch.nn.Linear(4, 4, bias=False).double()
net = torch.nn.Sequential(lin, BatchNorm(4, eps=1e-12).double()).train()
target = torch.randn(32, 4, dtype=torch.float64)
loss = ((net(x) - target) ** 2).mean()
g1 = torch.autograd.grad(loss, lin.weight)[0]
with torch.no_grad():
    lin.weight.mul_(10.0)
loss10 = ((net(x) - target) ** 2).mean()
g10 = torch.autograd.grad(loss10, lin.weight)[0]
print("loss at W and at 10·W:", float(loss), float(loss10))
print("‖∇(10W)‖ / ‖∇W‖ =", float(g10.norm() / g1.norm()))
assert abs(float(loss) - float(loss10)) < 1e-9
assert abs(float(g10.norm() / g1.norm()) - 0.1) < 1e-6

# %% [markdown]
# ## 4. Train and eval mode are different functions
# In eval mode BN uses its running statistics; a batch-dependent layer in training, a fixed affine map at inference.

# %%
bn.eval()
print("train vs eval output differ by", float((bn(x).detach() - y).abs().max()))
assert not torch.allclose(bn(x).detach(), y)
