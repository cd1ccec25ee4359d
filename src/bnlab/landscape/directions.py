"""Directions in parameter space for loss landscapes (Li et al. 2018, "Visualizing the Loss Landscape of Neural
Nets", Sec. 4).

A *direction* is a dict ``parameter name -> tensor`` shaped like the model's parameters. A landscape is the loss at
``w = origin + sum_i c_i d_i``.

Filter-wise normalisation (Li et al. Eq. 1): a Gaussian direction ``d`` is rescaled filter by filter,

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||,

where ``i`` is the layer and ``j`` the filter (the slice along dim 0 of a weight: an output channel of a conv, a row
of a linear layer). Moving one unit along ``d`` then moves every filter by its own norm, so the picture does not
change when a scale-invariant (BN) net rescales its filters -- the reason the method exists. ``norm="layer"`` rescales
each parameter tensor as a whole; ``norm="none"`` keeps the raw Gaussian.

1-D parameters (biases, BN gamma/beta) have no filters; the policy ``one_d`` says what they get:

* ``zero`` (default; Li's ``ignore='biasbn'``): the direction is 0 there -- the landscape moves the weights only;
* ``filter``: the whole vector is treated as one filter and rescaled to the norm of the parameter (for
  ``norm="none"``: left raw);
* ``include``: the raw Gaussian entries, never rescaled.

Orthogonalisation, when asked, happens AFTER normalisation (Gram-Schmidt on the flattened directions), so the
second direction keeps the first one's scale and is exactly orthogonal to it; its filters are then only
approximately normalised (the projection removed is tiny in high dimension).

Directions are drawn from a CPU `torch.Generator` seeded with `seed`, in the order of ``named_parameters``, in
float32, so the same seed gives the same direction on any device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bnlab.errors import BnlabError

ParamDict = dict[str, torch.Tensor]

NORMS: tuple[str, ...] = ("filter", "layer", "none")
ONE_D_POLICIES: tuple[str, ...] = ("zero", "filter", "include")


def model_origin(model: nn.Module) -> ParamDict:
    """Detached copies of the model's parameters (the landscape's centre), in `named_parameters` order."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise BnlabError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def normalize_direction(direction: Mapping[str, torch.Tensor], origin: Mapping[str, torch.Tensor], *,
                        norm: str = "filter", one_d: str = "zero", eps: float = 1e-10) -> ParamDict:
    """A new direction rescaled to `origin` by `norm` ("filter" | "layer" | "none") and the 1-D policy `one_d`."""
    _check_choice(norm, NORMS, "norm")
    _check_choice(one_d, ONE_D_POLICIES, "one_d")
    out: ParamDict = {}
    for name, d in direction.items():
        w = origin[name]
        if w.shape != d.shape:
            raise BnlabError(f"direction entry {name!r} has shape {tuple(d.shape)}, parameter has {tuple(w.shape)}")
        if d.dim() <= 1:
            if one_d == "zero":
                out[name] = torch.zeros_like(d)
                continue
            if one_d == "include" or norm == "none":
                out[name] = d.clone()
                continue
            out[name] = d * (w.norm() / (d.norm() + eps))  # the whole vector is one filter
            continue
        if norm == "none":
            out[name] = d.clone()
        elif norm == "layer":
            out[name] = d * (w.norm() / (d.norm() + eps))
        else:  # filter: one norm per slice along dim 0
            d_norm = d.flatten(1).norm(dim=1)  # (F, ...) -> (F,)
            w_norm = w.flatten(1).norm(dim=1)  # (F,)
            scale = (w_norm / (d_norm + eps)).view(-1, *([1] * (d.dim() - 1)))  # (F, 1, 1, ...)
            out[name] = d * scale
    return out


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """<a, b> over all entries, accumulated in float64."""
    return float(sum((a[k].double() * b[k].double()).sum() for k in a))


def orthogonalize(directions: Sequence[Mapping[str, torch.Tensor]]) -> list[ParamDict]:
    """Gram-Schmidt: each direction minus its projections on the earlier ones (their norms are kept as given for
    the first; later ones are rescaled back to their own norm before orthogonalisation, so scale is preserved)."""
    out: list[ParamDict] = []
    for d in directions:
        before = dot(d, d) ** 0.5
        v = {k: t.double().clone() for k, t in d.items()}
        for u in out:
            coef = dot(v, u) / dot(u, u)
            for k in v:
                v[k] -= coef * u[k].double()
        after = dot(v, v) ** 0.5
        if after < 1e-12 * max(before, 1e-30):
            raise BnlabError("directions are linearly dependent; cannot orthogonalise")
        out.append({k: (t * (before / after)).to(d[k].dtype) for k, t in v.items()})
    return out


def random_direction(origin: Mapping[str, torch.Tensor], generator: torch.Generator, *, norm: str = "filter",
                     one_d: str = "zero") -> ParamDict:
    """One Gaussian direction drawn from `generator` (CPU) and normalised to `origin`."""
    raw = {name: torch.randn(w.shape, generator=generator, dtype=torch.float32).to(device=w.device, dtype=w.dtype)
           for name, w in origin.items()}
    return normalize_direction(raw, origin, norm=norm, one_d=one_d)


def random_directions(origin: Mapping[str, torch.Tensor], count: int, seed: int, *, norm: str = "filter",
                      one_d: str = "zero", orthogonal: bool = False) -> list[ParamDict]:
    """`count` seeded, normalised Gaussian directions (orthogonalised after normalisation when asked)."""
    if count < 1:
        raise BnlabError(f"count must be >= 1, got {count}")
    generator = torch.Generator().manual_seed(int(seed))
    dirs = [random_direction(origin, generator, norm=norm, one_d=one_d) for _ in range(count)]
    return orthogonalize(dirs) if orthogonal and count > 1 else dirs


def line_direction(start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor]) -> ParamDict:
    """The straight line from `start` to `end` (e.g. init -> final): ``end - start`` (``c = 0`` start, 1 end)."""
    if set(start) != set(end):
        missing = sorted(set(start) ^ set(end))
        raise BnlabError(f"checkpoints have different parameters (e.g. {missing[0]!r})")
    out: ParamDict = {}
    for name in start:
        if start[name].shape != end[name].shape:
            raise BnlabError(f"parameter {name!r} has different shapes in the two checkpoints")
        out[name] = (end[name] - start[name]).detach().clone()
    return out


@dataclass
class PcaDirections:
    """PCA of a training trajectory around its last point (Li et al. Sec. 7).

    directions: the top principal directions (unit norm); explained: their explained-variance ratios;
    path: (T, k) coordinates of every checkpoint ``w_t - origin`` projected on the directions."""

    directions: list[ParamDict]
    explained: list[float]
    path: torch.Tensor  # (T, k)


def pca_directions(trajectory: Sequence[Mapping[str, torch.Tensor]], origin: Mapping[str, torch.Tensor] | None = None,
                   count: int = 2) -> PcaDirections:
    """Principal directions of the checkpoints' displacements ``w_t - origin`` (origin: last checkpoint by
    default), computed by SVD of the centred (T, P) matrix in float64, as sklearn's PCA in Li's code does."""
    if len(trajectory) < count + 1:
        raise BnlabError(f"a PCA of {count} directions needs at least {count + 1} checkpoints, got {len(trajectory)}")
    origin = trajectory[-1] if origin is None else origin
    names = list(origin)
    rows = torch.stack([torch.cat([(w[n] - origin[n]).double().flatten() for n in names])
                        for w in trajectory])  # (T, P)
    centred = rows - rows.mean(dim=0, keepdim=True)  # (T, P)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(T, P), P)
    var = s**2
    explained = (var[:count] / var.sum().clamp_min(1e-300)).tolist()
    basis = vh[:count]  # (k, P), orthonormal rows
    path = rows @ basis.T  # (T, k)
    directions: list[ParamDict] = []
    for row in basis:
        d: ParamDict = {}
        offset = 0
        for n in names:
            size = origin[n].numel()
            d[n] = row[offset:offset + size].view_as(origin[n]).to(origin[n].dtype)
            offset += size
        directions.append(d)
    return PcaDirections(directions=directions, explained=[float(e) for e in explained], path=path.float())
