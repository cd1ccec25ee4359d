"""The settings of a study (plain data, validated at the edge: unknown keys and bad values named)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bnlab.errors import BnlabError
from bnlab.probes.hessian.lanczos import CRITERIA

# what `probes` may select: C11's gradients at init, C03's ICS, C05/C06's along-gradient probes, the Hessian (start
# and end), C14's landscapes, and the landscapes/Hessian in BN's eval and recalibrated modes besides train mode
PROBES: tuple[str, ...] = ("gradient_flow", "ics", "along_gradient", "hessian", "landscape", "eval_modes")


@dataclass(frozen=True)
class StudyConfig:
    """Both nets of every seed train with these settings, through `bnlab.train`, with the same batches."""

    steps: int = 300  # training steps per net
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd (with `momentum`) | adam
    momentum: float = 0.9  # SGD only
    seeds: int = 3  # seeds 0..seeds-1: each trains both nets from the same init stream and batch order
    probe_every: int = 50  # Santurkar's probes (ICS, along-gradient) at step 0 and every k steps
    eta_factors: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # step sizes along −g, × lr (Santurkar Fig. 4)
    eval_every: int = 25  # test accuracy every k steps (steps to --target-acc, C13)
    target_acc: float | None = None  # C13 is measured only when a target accuracy is given
    samples: int = 128  # training examples the landscapes are measured on (each point: one forward pass over
    # them, 2 in BN mode recalibrated; 2x the training batch, so train-mode BN normalises over 128 as over 64)
    landscape_points: int = 11  # a points × points 2-D grid and a (2 points − 1)-point line, over ±radius
    landscape_radius: float = 1.0  # in filter-normalised units (Li et al.)
    rough_radius: float = 1.0  # roughness over the interior points within this distance of the centre (C14's)
    hessian_samples: int = 64  # the Hessian on the first of those examples (all when fewer): a Hessian-vector
    # product is the study's dearest operation (resnet10t at 3×32×32 on 64 examples: ~0.4 CPU s, a forward pass
    # over 128 examples ~0.07 s), and λ_max and the trace enter only secondary results, as log ratios
    hessian_tol: float = 1e-2  # λ_max: Lanczos stops when its estimated eigenvalue error min(r, r²/δ) is at
    # most this share of λ_max (Parlett's bound with the gap δ estimated from the Ritz values: `hessian_criterion`)
    hessian_criterion: str = "eigenvalue"  # eigenvalue | residual (‖Hy − θy‖ <= tol·|θ|: a bound; 1.7-2x the products)
    trace_rtol: float = 0.1  # the Hutch++ trace stops early when its standard error is below this share ...
    trace_samples: int = 10  # ... and at most after this many Hutchinson samples (deflated by λ_max's Lanczos
    # basis of >= 10 vectors: net.hessian_numbers); its standard error is recorded beside it (trace_se)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    probes: tuple[str, ...] = PROBES  # what is measured (a claim whose probe is left out is not measured)
    lr_grid: tuple[float, ...] = ()  # when given: each net trains at the grid lr with the lowest final training
    # loss on `lr_seeds` held-out seeds (1000, 1001, ...), so each net is compared trained as well as it can be
    lr_seeds: int = 1
    match_init: bool = False  # the twin starts its branches off where the BN net's γ = 0 does (twin.py)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "seeds", "probe_every", "eval_every", "samples", "hessian_samples",
                    "trace_samples"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BnlabError(f"{key} must be an integer >= 1, got {value!r}")
        if not isinstance(self.landscape_points, int) or self.landscape_points < 5:
            raise BnlabError(f"landscape_points must be an integer >= 5, got {self.landscape_points!r}")
        for key in ("lr", "landscape_radius", "rough_radius", "hessian_tol", "trace_rtol"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BnlabError(f"{key} must be a finite number > 0, got {value!r}")
        if self.trace_samples < 2:
            raise BnlabError(f"trace_samples must be >= 2 (a standard error needs two), got {self.trace_samples!r}")
        if self.hessian_criterion not in CRITERIA:
            raise BnlabError(f"hessian_criterion must be one of {', '.join(CRITERIA)}, "
                             f"got {self.hessian_criterion!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise BnlabError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise BnlabError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.eta_factors or not all(math.isfinite(f) and f > 0 for f in self.eta_factors):
            raise BnlabError(f"eta_factors must be positive numbers, got {self.eta_factors!r}")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.lr_grid):
            raise BnlabError(f"lr_grid must hold finite numbers > 0, got {self.lr_grid!r}")
        if not isinstance(self.lr_seeds, int) or self.lr_seeds < 1:
            raise BnlabError(f"lr_seeds must be an integer >= 1, got {self.lr_seeds!r}")
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown or not isinstance(self.probes, tuple):
            raise BnlabError(f"probes must be among {', '.join(PROBES)}, got {', '.join(map(str, unknown))}")
        if self.target_acc is not None and not (0 < self.target_acc <= 1):
            raise BnlabError(f"target_acc must be in (0, 1], got {self.target_acc!r}")
