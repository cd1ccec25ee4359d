"""The verification table behind `bnlab check` (claims C01, C08, C09): BN's mechanics, Jacobian and scale invariance.

Every row compares a bnlab computation with an independent reference and reports the maximum error against a
tolerance written here, before any run:

* C01 mechanics: bnlab's `BatchNorm` vs `torch.nn.BatchNorm1d/2d/3d` (outputs, input and parameter gradients,
  running statistics over several steps with ``momentum=0.1`` and ``None``, eval outputs) in float64 and float32;
  vs a literal NumPy transcription of Ioffe Alg. 1; its analytic backward vs central finite differences; double
  backward (Hessian-vector products) vs torch's; state_dicts both ways; `precise_statistics` vs Alg. 2 by hand.
* C08 Jacobian: the explicit ∂x̂/∂x vs autograd and finite differences, its eigenvalues vs the prediction, the
  directions **1** and x̂ as its null space, Santurkar Thm 4.1's identity on a real layer; the published constant
  (1/√m) is reported as a *note* (how often the printed bound fails), not a pass/fail row.
* C09 scale invariance: BN(αWx) = BN(Wx), ∂L/∂(αW) = (1/α)∂L/∂W, ⟨∇W, W⟩ = 0 over α ∈ {0.1, …, 100} (float64, tiny ε
  so the ε effect stays below the tolerance).

The same functions, run over several seeds, are the trials of experiments C01, C08 and C09.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlab.layers.batchnorm import BatchNorm, batch_norm_train
from bnlab.layers.jacobian import (
    autograd_jacobian,
    bn_input_and_grad,
    bn_jacobian,
    finite_difference_jacobian,
    jacobian_spectrum,
    theorem_4_1,
)
from bnlab.layers.precise import precise_statistics
from bnlab.probes.invariance import scale_invariance

# name -> (claim, tolerance, what is compared)
TOLERANCES: dict[str, tuple[str, float, str]] = {
    "bn.forward.f64": ("C01", 1e-10, "output vs torch BatchNorm1d/2d/3d, train mode, float64"),
    "bn.input_grad.f64": ("C01", 1e-10, "∂L/∂x vs torch, float64"),
    "bn.param_grad.f64": ("C01", 1e-10, "∂L/∂γ, ∂L/∂β vs torch, float64"),
    "bn.running_stats.f64": ("C01", 1e-10, "running mean/var after 3 steps, momentum 0.1 and None, float64"),
    "bn.eval.f64": ("C01", 1e-10, "eval-mode output vs torch, float64"),
    "bn.forward.f32": ("C01", 1e-5, "output vs torch, float32"),
    "bn.input_grad.f32": ("C01", 1e-5, "∂L/∂x vs torch, float32"),
    "bn.running_stats.f32": ("C01", 1e-5, "running statistics vs torch, float32"),
    "bn.alg1_numpy.f64": ("C01", 1e-12, "output vs a literal NumPy Ioffe Alg. 1 (biased var, ε, γ, β)"),
    "bn.backward_vs_fd.f64": ("C01", 1e-6, "analytic backward Jacobian vs central finite differences"),
    "bn.double_backward.f64": ("C01", 1e-10, "Hessian-vector product through BN vs torch's"),
    "bn.state_dict": ("C01", 0.0, "state_dict round trip ours <-> torch (max |difference|)"),
    "precise.alg2.f64": ("C01", 1e-12, "precise_statistics vs Ioffe Alg. 2 by hand (m/(m-1) x mean var)"),
    "jacobian.vs_autograd": ("C08", 1e-10, "explicit ∂x̂/∂x vs autograd through torch's batch_norm"),
    "jacobian.vs_finite_diff": ("C08", 1e-6, "explicit ∂x̂/∂x vs central finite differences"),
    "jacobian.eigenvalues": ("C08", 1e-10, "eigenvalues vs predicted {0, ε/s³, 1/s (m-2 times)}"),
    "jacobian.null_space": ("C08", 1e-8, "1 − alignment of span{1, x̂} with the two smallest eigenvectors"),
    "thm41.identity": ("C08", 1e-8, "Santurkar Thm 4.1 identity (c = 1/m, exact ε form), relative, real layer"),
    "invariance.forward": ("C09", 1e-8, "max relative |BN(αWx) − BN(Wx)| at the net output"),
    "invariance.grad": ("C09", 1e-7, "max relative |α ∂L/∂(αW) − ∂L/∂W|"),
    "invariance.orthogonality": ("C09", 1e-8, "max |cos(∇W, W)|"),
}
NOTES: dict[str, tuple[str, str]] = {
    "thm41.published_bound_violations": ("C08", "fraction of channels where the printed bound (c = 1/√m) fails"),
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    claim: str
    max_error: float
    tolerance: float | None
    status: str  # pass | fail | note
    description: str


# ----------------------------------------------------------------------------------------------------- C01


def _copy_affine(ours: nn.Module, ref: nn.Module, gen: torch.Generator) -> None:
    c = ours.num_features
    with torch.no_grad():
        w = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
        b = torch.randn(c, generator=gen, dtype=torch.float64)
        for layer in (ours, ref):
            layer.weight.copy_(w)
            layer.bias.copy_(b)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def _compare_with_torch(dtype: torch.dtype, gen: torch.Generator) -> dict[str, float]:
    """Train 3 steps then eval, ours vs torch, for 1d/2d/3d inputs and both momentum modes."""
    shapes = {nn.BatchNorm1d: (12, 4), nn.BatchNorm2d: (4, 3, 3, 4), nn.BatchNorm3d: (3, 2, 2, 3, 2)}
    err = {"forward": 0.0, "input_grad": 0.0, "param_grad": 0.0, "running_stats": 0.0, "eval": 0.0}
    for ref_cls, shape in shapes.items():
        for momentum in (0.1, None):
            ours, ref = BatchNorm(shape[1], momentum=momentum), ref_cls(shape[1], momentum=momentum)
            _copy_affine(ours, ref, gen)
            ours, ref = ours.to(dtype), ref.to(dtype)
            for step in range(3):
                x = (torch.randn(shape, generator=gen, dtype=torch.float64) * (1 + step) + step).to(dtype)
                g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
                xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
                ya, yb = ours(xa), ref(xb)
                ya.backward(g)
                yb.backward(g)
                err["forward"] = max(err["forward"], _max_abs(ya, yb))
                err["input_grad"] = max(err["input_grad"], _max_abs(xa.grad, xb.grad))
                err["param_grad"] = max(err["param_grad"], _max_abs(ours.weight.grad, ref.weight.grad),
                                        _max_abs(ours.bias.grad, ref.bias.grad))
                err["running_stats"] = max(err["running_stats"], _max_abs(ours.running_mean, ref.running_mean),
                                           _max_abs(ours.running_var, ref.running_var))
            ours.eval()
            ref.eval()
            x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
            err["eval"] = max(err["eval"], _max_abs(ours(x), ref(x)))
    return err


def _alg1_numpy(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Ioffe & Szegedy Alg. 1, literally, for x (m, C)."""
    mu = x.sum(axis=0) / x.shape[0]
    var = ((x - mu) ** 2).sum(axis=0) / x.shape[0]
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta


def _backward_vs_fd(gen: torch.Generator) -> float:
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    w = torch.rand(2, generator=gen, dtype=torch.float64) + 0.5

    def f(v: torch.Tensor) -> torch.Tensor:
        return batch_norm_train(v, w, None, 1e-5)[0]

    analytic = torch.autograd.functional.jacobian(f, x)  # uses our backward
    h = 1e-6
    numeric = torch.zeros_like(analytic)
    for idx in np.ndindex(*x.shape):
        step = torch.zeros_like(x)
        step[idx] = h
        numeric[(...,) + idx] = (f(x + step) - f(x - step)) / (2 * h)
    return _max_abs(analytic, numeric)


def _double_backward(gen: torch.Generator) -> float:
    x = torch.randn(8, 3, 2, generator=gen, dtype=torch.float64)
    w0 = torch.randn(3, 3, 1, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 3, 1, generator=gen, dtype=torch.float64)
    hvps = []
    for bn in (BatchNorm(3), nn.BatchNorm1d(3)):
        conv = nn.Conv1d(3, 3, 1, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(w0)
        net = nn.Sequential(conv, bn.double(), nn.Tanh())
        loss = net(x).pow(3).mean()
        (g,) = torch.autograd.grad(loss, conv.weight, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), conv.weight)
        hvps.append(hv)
    return _max_abs(hvps[0], hvps[1])


def _state_dict_roundtrip(gen: torch.Generator) -> float:
    ours, ref = BatchNorm(3), nn.BatchNorm2d(3)
    ours(torch.randn(4, 3, 2, 2, generator=gen))
    ref(torch.randn(4, 3, 2, 2, generator=gen) * 3)
    a, b = copy.deepcopy(ref), copy.deepcopy(ours)
    a.load_state_dict(ours.state_dict())
    b.load_state_dict(ref.state_dict())
    if list(ours.state_dict()) != list(ref.state_dict()):
        return float("inf")
    return max(max(_max_abs(v, a.state_dict()[k]) for k, v in ours.state_dict().items()),
               max(_max_abs(v, b.state_dict()[k]) for k, v in ref.state_dict().items()))


def _precise_vs_alg2(gen: torch.Generator) -> float:
    net = nn.Sequential(nn.Linear(4, 3), BatchNorm(3)).double()
    with torch.no_grad():  # every parameter from `gen`: a default-initialised bias would draw from the global RNG,
        # and the check's last digit then depended on what ran before it in the process (local vs process executor)
        net[0].weight.copy_(torch.randn(3, 4, generator=gen, dtype=torch.float64))
        net[0].bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    batches = [torch.randn(6, 4, generator=gen, dtype=torch.float64) + i for i in range(3)]
    precise_statistics(net, batches)
    with torch.no_grad():
        acts = [net[0](b) for b in batches]
    m = 6
    mean = torch.stack([a.mean(0) for a in acts]).mean(0)
    var = m / (m - 1) * torch.stack([a.var(0, unbiased=False) for a in acts]).mean(0)
    return max(_max_abs(net[1].running_mean, mean), _max_abs(net[1].running_var, var))


def mechanics_errors(seed: int = 0) -> dict[str, float]:
    """C01: max errors of bnlab's BN mechanics against independent references (keys of TOLERANCES 'bn.*',
    'precise.*')."""
    gen = torch.Generator().manual_seed(seed)
    f64 = _compare_with_torch(torch.float64, gen)
    f32 = _compare_with_torch(torch.float32, gen)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64) * 2 + 1
    layer = BatchNorm(3).double()
    _copy_affine(layer, BatchNorm(3).double(), gen)
    alg1 = _alg1_numpy(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(), layer.eps)
    return {
        "bn.forward.f64": f64["forward"], "bn.input_grad.f64": f64["input_grad"],
        "bn.param_grad.f64": f64["param_grad"], "bn.running_stats.f64": f64["running_stats"],
        "bn.eval.f64": f64["eval"], "bn.forward.f32": f32["forward"], "bn.input_grad.f32": f32["input_grad"],
        "bn.running_stats.f32": f32["running_stats"],
        "bn.alg1_numpy.f64": float(np.abs(layer(x).detach().numpy() - alg1).max()),
        "bn.backward_vs_fd.f64": _backward_vs_fd(gen), "bn.double_backward.f64": _double_backward(gen),
        "bn.state_dict": _state_dict_roundtrip(gen), "precise.alg2.f64": _precise_vs_alg2(gen),
    }


# ----------------------------------------------------------------------------------------------------- C08


def small_bn_net(gen: torch.Generator, width: int = 8, in_dim: int = 6, classes: int = 3, eps: float = 1e-5,
                 ) -> nn.Module:
    """Linear -> bnlab BatchNorm -> ReLU -> Linear in float64, initialised from `gen`."""
    net = nn.Sequential(nn.Linear(in_dim, width), BatchNorm(width, eps=eps), nn.ReLU(), nn.Linear(width, classes))
    net = net.double()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[1] ** 0.5)
        net[1].weight.copy_(torch.rand(width, generator=gen, dtype=torch.float64) + 0.5)
        for linear in (net[0], net[3]):  # nn.Linear's default bias comes from the global RNG: not reproducible
            linear.bias.copy_(0.1 * torch.randn(linear.bias.shape, generator=gen, dtype=torch.float64))
    return net


def _train_a_little(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 0.1) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


def jacobian_errors(seed: int = 0, m: int = 16, train_steps: int = 0, batch: int = 32) -> dict[str, float]:
    """C08: explicit Jacobian vs references, spectrum vs prediction, Thm 4.1 on a real layer of a small net trained
    `train_steps` SGD steps (keys 'jacobian.*', 'thm41.*')."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, generator=gen, dtype=torch.float64) * 2 + 0.5
    jac = bn_jacobian(x)
    spec = jacobian_spectrum(x)
    net = small_bn_net(gen)
    inputs = torch.randn(batch, 6, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 3, (batch,), generator=gen)
    _train_a_little(net, inputs, targets, train_steps)
    layer_in, grad_out = bn_input_and_grad(net, net[1], inputs, targets)
    thm = theorem_4_1(layer_in, grad_out, net[1].weight)
    return {
        "jacobian.vs_autograd": _max_abs(jac, autograd_jacobian(x)),
        "jacobian.vs_finite_diff": _max_abs(jac, finite_difference_jacobian(x)),
        "jacobian.eigenvalues": spec.max_error,
        "jacobian.null_space": max(1 - spec.ones_alignment, 1 - spec.xhat_alignment, 0.0),
        "thm41.identity": thm.identity_rel_error,
        "thm41.published_bound_violations": float((~thm.published_bound_holds).double().mean()),
    }


# ----------------------------------------------------------------------------------------------------- C09


def invariance_errors(seed: int = 0, alphas: tuple[float, ...] = (0.1, 0.5, 2.0, 10.0, 100.0),
                      eps: float = 1e-14) -> dict[str, float]:
    """C09: the three scale-invariance identities for the Linear layer feeding BN in a small float64 net."""
    gen = torch.Generator().manual_seed(seed)
    net = small_bn_net(gen, eps=eps)
    inputs = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 3, (32,), generator=gen)
    rep = scale_invariance(net, net[0], inputs, targets, alphas=alphas)
    return {"invariance.forward": rep.max_forward_error, "invariance.grad": rep.max_grad_error,
            "invariance.orthogonality": rep.max_orthogonality}


# ----------------------------------------------------------------------------------------------------- table


def grade(errors: dict[str, float]) -> list[CheckResult]:
    """Turn measured errors into table rows (pass when error <= tolerance; notes never fail)."""
    rows = []
    for name, value in errors.items():
        if name in TOLERANCES:
            claim, tol, what = TOLERANCES[name]
            ok = value == value and value <= tol  # NaN fails
            rows.append(CheckResult(name, claim, value, tol, "pass" if ok else "fail", what))
        else:
            claim, what = NOTES[name]
            rows.append(CheckResult(name, claim, value, None, "note", what))
    return rows


def run_checks(seed: int = 0) -> list[CheckResult]:
    """Every verification of C01, C08 and C09 once (a few seconds on a laptop CPU)."""
    errors = {**mechanics_errors(seed), **jacobian_errors(seed, train_steps=5), **invariance_errors(seed)}
    return grade(errors)


def format_table(rows: list[CheckResult]) -> str:
    """A plain-text table: check, claim, max error, tolerance, status, what was compared."""
    header = f"{'check':34s} {'claim':5s} {'max error':>10s} {'tolerance':>10s} {'status':6s}  compared"
    lines = [header, "-" * len(header)]
    for r in rows:
        tol = "-" if r.tolerance is None else f"{r.tolerance:.0e}"
        lines.append(f"{r.name:34s} {r.claim:5s} {r.max_error:10.2e} {tol:>10s} {r.status:6s}  {r.description}")
    failed = sum(r.status == "fail" for r in rows)
    lines.append(f"{len(rows) - failed} of {len(rows)} rows passed or noted; {failed} failed")
    return "\n".join(lines)
