"""C11 gradient flow: smoke plan end to end; the endpoint sees vanishing as well as exploding; activation gradients
against a float64 chain; the fair no-BN comparators; the rule's cases."""

import json
import math

import pytest
import torch

from bnlab.data import load_dataset
from bnlab.errors import BnlabError
from bnlab.experiments import c11_gradient_flow as c11
from bnlab.experiments.base import DEFAULT_SEEDS
from bnlab.models import build_model
from bnlab.probes import gradflow as gradflow_probe
from bnlab.trials import gradient_flow as gradflow
from experiments_smoke import run_and_check


def test_smoke_plan_runs_and_summarizes():
    plan, results, result = run_and_check(c11)
    assert [r.setting for r in result.decision.primary] == list(c11.PROTOCOL.endpoint.settings)
    for rec in (r for n, r in results.items() if n.startswith("grad/")):
        assert len(rec["weight_grad_sq"]) == plan.config["depth"] + 2  # stem + blocks + head
        assert all(math.isfinite(v) and v > 0 for v in rec["weight_grad_sq"] + rec["layer_jac_msv"])
    assert {f.id for f in result.figures} == {"grad_profile", "weight_grad_profile", "layer_jacobian", "trainability"}
    matched = [n for n in results if c11.MATCHED in n]
    assert len(matched) == len(plan.seeds)
    assert any("Meterez" in s.name for s in result.decision.secondary)
    assert any(s.note.startswith("finding") for s in result.decision.secondary)  # Yang's rate, tested


def test_relu_bn_gradient_explodes_at_yang_rate():
    rec = gradflow.gradient_profile(dataset="mnist5k", depth=20, width=128, activation="relu", residual=False,
                                    norm="bn", batch_size=128, jacobian_probes=1, seed=0)
    assert rec["growth_factor"] == pytest.approx(c11.YANG_RELU, abs=0.08)


def test_uniform_vanishing_without_bn_is_seen():
    """The fitted weight-gradient growth (≈ 1.00 per layer for a Glorot ReLU net without BN) looks fine while the
    layer Jacobians halve signals at every layer, which the Jacobian gain and the activation gradients show."""
    rec = gradflow.gradient_profile(dataset="mnist5k", depth=20, width=128, activation="relu", residual=False,
                                    norm="none", batch_size=64, jacobian_probes=1, seed=0)
    assert rec["growth_factor"] == pytest.approx(1.0, abs=0.05)  # flat gradients ...
    assert gradflow_probe.gradient_spread(rec["weight_grad_sq"]) < 0.5
    assert gradflow_probe.jacobian_gain(rec["layer_jac_msv"]) < -4  # ... while 20 layers shrink signals by 2^-20 ≈ 1e-6
    assert gradflow_probe.gradient_spread(rec["input_grad_sq"]) > 4  # the activation gradients vanish


def test_the_fair_no_bn_comparator_keeps_activation_gradients_flat():
    """He init (the comparator for plain ReLU nets) keeps ‖∂L/∂h_l‖ within a decade over 20 layers."""
    kw = dict(dataset="mnist5k", depth=20, width=128, activation="relu", residual=False, norm="none", batch_size=64,
              jacobian_probes=1, seed=0, standardise=True)
    he = gradflow.gradient_profile(init="he", **kw)
    assert gradflow_probe.gradient_spread(he["input_grad_sq"]) < 1.0
    assert abs(gradflow_probe.jacobian_gain(he["layer_jac_msv"])) < 2.0
    assert c11.comparator("relu", "residual", "none", 16) == {"init": "he", "branch_scale": 0.25}
    assert c11.comparator("relu", "plain", "bn", 16) == {"init": "glorot", "branch_scale": 1.0}


def test_activation_gradients_against_a_linear_chain_in_float64():
    """Reference oracle: a linear chain h_{l+1} = c·h_l has ∂L/∂h_l = c^(D−l) ∂L/∂h_D, so the squared activation
    gradients at the first and last block differ by exactly c^(2(D−1))."""
    torch.manual_seed(0)
    depth, c = 6, 1.5
    model = build_model("deep_mlp", norm="none", in_shape=(4,), num_classes=3, depth=depth, width=5,
                        activation="linear").double()
    with torch.no_grad():
        for block in model.blocks:
            block.linear.weight.copy_(c * torch.eye(5, dtype=torch.float64))
            block.linear.bias.zero_()
    x, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,))
    rec = gradflow_probe.layer_gradient_norms(model, torch.nn.functional.cross_entropy, (x, y))
    sq = rec["input_grad_sq"]  # stem input, the depth block inputs, head input
    assert sq[1] / sq[-2] == pytest.approx(c ** (2 * (depth - 1)), rel=1e-12)
    assert gradflow_probe.gradient_spread(sq) == pytest.approx(2 * (depth - 1) * math.log10(c), rel=1e-12)


def test_residual_branch_scale_and_standardised_inputs():
    torch.manual_seed(0)
    net = build_model("deep_mlp", in_shape=(4,), num_classes=3, depth=2, width=5, residual=True, branch_scale=0.25)
    x = torch.randn(6, 4)
    h = net.stem(x)
    for block in net.blocks:
        h = h + 0.25 * block(h)
    assert torch.allclose(net(x), net.head(h))
    with pytest.raises(BnlabError, match="branch_scale"):
        build_model("deep_mlp", in_shape=(4,), num_classes=3, branch_scale=0.0)
    data = gradflow.standardised(load_dataset("mnist5k"))
    flat = data.train_x.flatten(1).double()
    moving = flat.std(0) > 0
    assert float(flat.mean(0).abs().max()) < 1e-4
    assert torch.allclose(flat.std(0)[moving], torch.ones(int(moving.sum()), dtype=torch.float64), atol=1e-4)


def test_measures_against_hand_numbers():
    assert gradflow_probe.jacobian_gain([5.0, 10.0, 0.1, 100.0, 7.0]) == pytest.approx(2.0)  # stem and head left out
    assert math.isnan(gradflow_probe.jacobian_gain([1.0, 0.0, 1.0]))
    assert gradflow_probe.gradient_spread([9.0, 1e-3, 5.0, 10.0, 3.0]) == pytest.approx(4.0)  # |log10(1e-3 / 10)|
    assert gradflow_probe.gradient_spread([9.0, 10.0, 5.0, 1e-3, 3.0]) == pytest.approx(4.0)  # exploding alike
    assert math.isnan(gradflow_probe.gradient_spread([1.0, 2.0]))


def _metrics(plain_jac, res_jac, plain_grad, res_grad):
    return {"primary": {"plain/jacobian": plain_jac, "residual/jacobian": res_jac, "plain/gradient": plain_grad,
                        "residual/gradient": res_grad}}


def test_rule_plain_explodes_residual_near_one_is_mixed():
    near = [0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.12, -0.05]
    exploding = [8.1, 7.9, 8.4, 8.0, 8.2, 7.7, 8.3, 8.0]
    better = [3.0, 3.4, 2.8, 3.1, 3.3, 2.9, 3.0, 3.2]
    d = c11.decide(_metrics(exploding, near, [-7.9, -8.0, -8.3, -7.6, -8.1, -8.2, -7.8, -8.0], better))
    assert d.verdict == "mixed"
    assert d.votes == {"gradient flow near 1 [plain/jacobian]": "refuted",
                       "gradient flow near 1 [residual/jacobian]": "supported",
                       "gradient flow near 1 [plain/gradient]": "refuted",
                       "gradient flow near 1 [residual/gradient]": "supported"}


def test_rule_all_near_one_supported_and_noise_inconclusive():
    near = [0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.12, -0.05]
    better = [3.0, 3.4, 2.8, 3.1, 3.3, 2.9, 3.0, 3.2]
    assert c11.decide(_metrics(near, near, better, better)).verdict == "supported"
    wide = [3.0, -2.8, 1.8, -2.4, 4.0, -0.6, 0.8, -3.8]  # mean ≈ 0, but the 90% CI spans ±1.9
    assert c11.decide(_metrics(wide, near, better, better)).verdict == "inconclusive"
    vanishing = [-6.0, -6.2, -5.8, -6.1, -5.9, -6.0, -6.3, -5.7]  # a BN net that vanishes uniformly is not "near 1"
    assert c11.decide(_metrics(vanishing, near, better, better)).verdict == "mixed"


def test_bad_scale_and_batch():
    with pytest.raises(BnlabError, match="unknown scale"):
        c11.plan("huge")
    with pytest.raises(BnlabError, match="batch size"):
        gradflow_probe.yang_linear(3)
    assert gradflow_probe.yang_linear(64) == pytest.approx(62 / 61)


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_default_and_paper_plans_are_plain_data(scale):
    plan = c11.plan(scale, 3)
    json.dumps({"config": plan.config, "trials": [dict(t.params) for t in plan.trials]})
    cfg = plan.config
    assert len(plan.trials) == 3 * (len(cfg["activations"]) * 4 + 1 + len(cfg["train_depths"]) * 4)
    assert c11.plan(scale).seeds == tuple(range(DEFAULT_SEEDS[scale]["cheap"]))


def test_a_failed_probe_is_the_worst_outcome_for_its_net():
    """An activation gradient that vanished to 0 (no finite spread) is ±inf in the gradient settings; a block whose
    msv vanished puts the BN net's gain at −inf, one that overflowed at +inf; secondaries leave them out."""
    import copy

    from experiments_smoke import smoke_results

    plan, results = smoke_results(c11)
    s = plan.seeds[0]
    for nets, want in ((("none",), math.inf), (("bn",), -math.inf), (("bn", "none"), 0.0)):
        edited = copy.deepcopy(results)
        for net in nets:
            edited[f"grad/relu/plain/{net}/seed={s}"]["input_grad_sq"][1] = 0.0
        values = c11.setting_values(plan, edited, "relu")
        assert values["plain/gradient"][0] == want, nets
        assert math.isnan(c11.setting_values(plan, edited, "relu", worst=False)["plain/gradient"][0])
    assert c11.worst_gain([1.0, 0.0, 2.0, 1.0]) == -math.inf
    assert c11.worst_gain([1.0, float("inf"), 2.0, 1.0]) == math.inf
    assert c11.worst_gain([1.0, float("nan"), 2.0, 1.0]) == math.inf
    assert abs(c11.worst_gain([5.0, 10.0, 100.0, 7.0]) - 3.0) < 1e-12
