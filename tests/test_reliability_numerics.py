"""Numerical edge cases BN is famous for, and how bnlab handles bad numbers in data and in training.

* σ = 0 (a constant channel): the documented output is β exactly (x̂ = 0, ε keeps 1/√(σ²+ε) finite), with finite
  gradients, in (N, C) and (N, C, H, W) layouts, in train mode and in the explicit Jacobian.
* Huge (1e18) and tiny (1e-18) float32 activations: the variance (≈ 1e36 / 1e-36) neither overflows nor flushes to
  zero wrongly; compared with a float64 reference of the same float32 inputs. A large mean with a small spread
  (1e4 + 1e-2·z) is the classic E[x²] − E[x]² cancellation, which bnlab avoids by centring first.
* NaN / inf in data: a clear BnlabError naming the data set and the array, from the loaders and from `train` given
  a user's `Dataset`.
* A diverging run is a result: recorded with its step, partial curves up to that step, in result.json too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import bnlab.layers.batchnorm as batchnorm_module
from bnlab.data.dataset import Dataset, make_dataset
from bnlab.errors import BnlabError
from bnlab.layers import BatchNorm


@pytest.fixture(autouse=True)
def _one_thread_then_restore():
    """One torch thread (fast for tiny nets on a busy machine), the process-wide setting restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_bn(x64: torch.Tensor, eps: float, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """Alg. 1 of Ioffe & Szegedy in float64, the obvious way (statistics over every dim but 1)."""
    dims = [d for d in range(x64.dim()) if d != 1]
    shape = [1, -1] + [1] * (x64.dim() - 2)
    mean = x64.mean(dim=dims, keepdim=True)
    var = ((x64 - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x64 - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.double().view(shape) + bias.double().view(shape)
    return y


# ------------------------------------------------------------------------------------------------ σ = 0


def test_constant_channel_is_documented() -> None:
    assert "constant channel (σ = 0) is well defined" in batchnorm_module.__doc__
    assert "the output is β" in batchnorm_module.__doc__


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_constant_input_gives_beta_and_finite_gradients(shape: tuple[int, ...]) -> None:
    bn = BatchNorm(3).train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.25, -3.0, 7.0]))
    view = [1, -1] + [1] * (len(shape) - 2)
    beta = bn.bias.detach().view(view).expand(shape)
    # a value whose float32 mean is exact: x̂ = 0 exactly and the output is exactly β
    assert torch.equal(bn(torch.full(shape, 2.0)), beta)
    # any other value: μ carries a rounding error of a few ulp(x), so |x̂| <= a few ulp(x) / √ε, never more
    x = torch.full(shape, 123.456, requires_grad=True)  # every channel constant: σ = 0
    y = bn(x)
    assert torch.isfinite(y).all()
    bound = 4 * torch.finfo(torch.float32).eps * 123.456 / math.sqrt(bn.eps)  # ≈ 0.019
    assert ((y - beta).abs() <= bn.weight.detach().abs().view(view) * bound).all()
    (y * torch.randn(shape)).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(bn.weight.grad).all()
    assert torch.isfinite(bn.running_var).all() and torch.isfinite(bn.running_mean).all()
    # the eval path with the updated running statistics is finite too
    assert torch.isfinite(bn.eval()(x.detach())).all()
    # and torch's own BN agrees (same documented behaviour)
    ref = torch.nn.BatchNorm1d(3) if len(shape) == 2 else torch.nn.BatchNorm2d(3)
    ref.load_state_dict({k: v for k, v in BatchNorm(3).state_dict().items()})
    with torch.no_grad():
        ref.weight.copy_(bn.weight)
        ref.bias.copy_(bn.bias)
    torch.testing.assert_close(ref.train()(x.detach()), y.detach(), rtol=0, atol=0.05)


def test_constant_input_jacobian_is_finite() -> None:
    from bnlab.layers.jacobian import bn_jacobian

    x = torch.full((6,), 2.0, dtype=torch.float64)  # one feature over a batch of 6, σ = 0
    jac = bn_jacobian(x)
    assert torch.isfinite(jac).all()


# ------------------------------------------------------------------------------------------------ huge / tiny


@pytest.mark.parametrize("scale, offset, atol, var_rtol", [
    (1e18, 3.0, 2e-5, 1e-4), (1e-18, 3.0, 2e-5, 1e-4), (1e15, 0.0, 2e-5, 1e-4), (1e-15, -2.0, 2e-5, 1e-4),
    # mean 1e4, spread 1e-2: float32 holds the mean only to ulp(1e4) ≈ 1e-3 = 0.1 σ, so x̂ is good to ~0.05 (torch's
    # own BN: 0.11); E[x²] − E[x]² would give a variance of pure rounding noise (≈ 1e1 against a true 1e-4)
    (1e-2, 1e6, 0.05, 2e-2),
])
def test_float32_extremes_match_float64(scale: float, offset: float, atol: float, var_rtol: float) -> None:
    """x = scale·(z + offset) in float32, normalised, against a float64 reference of the same inputs."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 4, generator=g, dtype=torch.float64)
    x32 = (scale * (z + offset)).float()
    x64 = x32.double()  # the reference sees exactly the float32 inputs
    bn = BatchNorm(4, affine=False, momentum=None).train()  # cumulative average: after one batch, the batch's
    y = bn(x32)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    ref = reference_bn(x64, bn.eps)
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=atol)
    # the running variance is the batch's unbiased σ² ≈ scale² · var(z), without overflow (1e36 < 3.4e38)
    var64 = x64.var(dim=0, unbiased=True)
    assert torch.isfinite(bn.running_var).all() and (bn.running_var > 0).all()
    torch.testing.assert_close(bn.running_var.double(), var64, rtol=var_rtol, atol=0)


def test_the_cancellation_case_defeats_the_naive_variance() -> None:
    """Control: the one-pass E[x²] − E[x]² in float32 is far off where bnlab's centred variance is right."""
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x32 = (1e-2 * (z + 1e6)).float()
    naive = (x32 * x32).mean(0) - x32.mean(0) ** 2  # (C,)
    true = x32.double().var(0, unbiased=False)
    assert ((naive.double() - true).abs() > 10 * true).any()


def test_huge_activations_gradients_are_finite() -> None:
    x = (1e18 * torch.randn(32, 3, generator=torch.Generator().manual_seed(1))).requires_grad_()
    bn = BatchNorm(3).train()
    y = bn(x)
    (y ** 2).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(bn.weight.grad).all()
    # the gradient w.r.t. x scales as 1/σ: about 1e-18 times an O(1) number, not flushed to inf/nan
    assert 0 < x.grad.abs().max() < 1e-15


# ------------------------------------------------------------------------------------------------ NaN / inf data


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["train_x", "test_x"])
def test_non_finite_data_is_a_clear_error(bad: float, where: str) -> None:
    arrays = {"train_x": np.zeros((8, 3), np.float32), "train_y": np.zeros(8, np.int64),
              "test_x": np.zeros((4, 3), np.float32), "test_y": np.zeros(4, np.int64)}
    arrays[where][2, 1] = bad
    with pytest.raises(BnlabError, match=f"data set 'mine': {where} contains NaN or infinite values"):
        make_dataset("mine", **arrays, num_classes=2)


def test_train_rejects_a_users_dataset_with_nan(tmp_path: Path) -> None:
    from bnlab.train import TrainConfig, train

    x = torch.randn(32, 4)
    x[5, 2] = float("nan")
    data = Dataset("users", x, torch.zeros(32, dtype=torch.int64), torch.randn(8, 4),
                   torch.zeros(8, dtype=torch.int64), (4,), 2)
    config = TrainConfig(model="mlp", model_kwargs={"hidden": [4]}, steps=3, batch_size=8, progress=False)
    with pytest.raises(BnlabError, match="data set 'users': train_x contains NaN or infinite values"):
        train(config, dataset=data, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written


# ------------------------------------------------------------------------------------------------ divergence


def test_diverging_run_is_recorded_with_its_step_and_partial_curves(tmp_path: Path) -> None:
    from bnlab.train import TrainConfig, train

    config = TrainConfig(model="deep_mlp", model_kwargs={"depth": 3, "width": 32}, dataset="digits", lr=1e4,
                         steps=200, batch_size=32, eval_every=5, progress=False)
    result = train(config, out_dir=tmp_path / "run")
    step = result.diverged_at_step
    assert step is not None and 0 <= step < config.steps - 1  # it stopped early, at a recorded step
    h = result.history
    assert h["step"] == list(range(step + 1))  # the curve runs up to and including the diverged step
    last = h["train_loss"][-1]
    assert not math.isfinite(last) or last > config.diverge_factor * abs(h["train_loss"][0])
    assert all(math.isfinite(v) for v in h["train_loss"][:-1])  # every earlier loss was a number
    assert h["eval_step"] and h["eval_step"][0] == 0 and h["eval_step"][-1] <= step  # partial eval curves
    assert len(h["test_acc"]) == len(h["eval_step"]) == len(h["train_acc"])
    assert result.final["diverged_at_step"] == step and result.final["steps_done"] == step + 1
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["diverged_at_step"] == step
    assert saved["history"]["step"] == h["step"]
    assert "diverged at step" in result.summary()
    # rerunning the same diverged run gives the same record (it resumes from its last good checkpoint)
    again = train(config, out_dir=tmp_path / "run")
    assert again.diverged_at_step == step
    assert json.dumps(again.history["train_loss"]) == json.dumps(h["train_loss"])


def test_a_healthy_run_is_not_called_diverged() -> None:
    """Control: the same net at a sane learning rate finishes with no divergence recorded."""
    from bnlab.train import TrainConfig, train

    config = TrainConfig(model="deep_mlp", model_kwargs={"depth": 3, "width": 32}, dataset="digits", lr=0.05,
                         steps=30, batch_size=32, eval_every=10, progress=False)
    result = train(config)
    assert result.diverged_at_step is None and len(result.history["step"]) == 30
