"""Santurkar's noisy BN and the noise-only control."""

from __future__ import annotations

import pytest
import torch

from bnlab.errors import BnlabError
from bnlab.layers import make_norm
from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.noisy import DistributionNoise, NoisyBatchNorm


def test_noise_statistics_follow_santurkar_model():
    """Per step: every channel's μ_t in [−0.5, 0.5], σ_t in [1, 1.25]; elements: m within μ_t ± 0.1, s ~ N(σ_t, 0.1)."""
    noise = DistributionNoise(64, generator=torch.Generator().manual_seed(0))
    x = torch.zeros(4000, 64)
    s, m = noise.sample(x)
    mu_t = m.mean(0)  # (C,) estimate of μ_t per channel
    assert mu_t.abs().max() <= 0.5 + 0.01 and mu_t.std() > 0.1  # spread over channels: a per-unit draw
    assert ((m - mu_t).abs().max(0).values <= 0.1 + 0.01).all()
    sigma_t = s.mean(0)
    assert sigma_t.min() >= 1.0 - 0.01 and sigma_t.max() <= 1.25 + 0.01
    assert torch.allclose(s.std(0), torch.full((64,), 0.1), atol=0.01)
    assert torch.allclose(m.std(0), torch.full((64,), 0.2 / 12**0.5), atol=0.01)  # uniform width 0.2
    s2, m2 = noise.sample(x)  # a new step: new μ_t
    assert not torch.allclose(m2.mean(0), mu_t, atol=0.05)


def test_noisy_bn_equals_bn_then_noise_and_is_off_in_eval():
    torch.manual_seed(0)
    x = torch.randn(32, 5, 3, requires_grad=True)
    noisy = NoisyBatchNorm(5, seed=7)
    plain = BatchNorm(5)
    y = noisy(x)
    s, m = DistributionNoise(5, seed=7).sample(x)  # same seed -> same first draw
    expected = s * plain(x) + m
    assert torch.allclose(y, expected, atol=1e-6)
    y.sum().backward()  # gradients flow through s·a
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert list(noisy.state_dict()) == list(plain.state_dict())
    noisy.eval()
    plain.load_state_dict(noisy.state_dict())
    plain.eval()
    assert torch.equal(noisy(x), plain(x))
    noisy.train()
    noisy.training = False  # probes may flip the flag directly
    assert torch.equal(noisy(x), plain(x))


def test_seeded_generators_reproduce_and_settings_configurable():
    x = torch.randn(8, 3)
    a = make_norm("noisy_bn", 3, seed=1)
    b = make_norm("noisy_bn", 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), make_norm("noisy_bn", 3, seed=2)(x))
    quiet = DistributionNoise(3, mean_range=0.0, scale_low=1.0, scale_high=1.0, mean_jitter=0.0, scale_std=0.0)
    assert torch.equal(quiet(x), x)
    control = make_norm("noise", 3, seed=0)
    assert not torch.equal(control(x), x)
    control.eval()
    assert torch.equal(control(x), x)


def test_noise_bad_settings():
    with pytest.raises(BnlabError, match="scale_low"):
        DistributionNoise(3, scale_low=2.0, scale_high=1.0)
    with pytest.raises(BnlabError, match=">= 0"):
        DistributionNoise(3, scale_std=-1.0)
    with pytest.raises(BnlabError, match="not both"):
        DistributionNoise(3, generator=torch.Generator(), seed=1)
    with pytest.raises(BnlabError, match="shape"):
        DistributionNoise(3)(torch.randn(4, 2))
