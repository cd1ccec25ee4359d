"""One training run with Santurkar's and Ioffe's probes attached: the trial that C03, C04, C05 and C06 share.

`probed_run(config, probes, ...)` trains one `bnlab.train.TrainConfig` (plain data) and records, at step 0 and every
`probe_every` steps, before that step's update and on that step's batch (unless stated):

* ``along_gradient`` (`bnlab.probes.along_gradient`): loss and gradient at w − ηg for η = `eta_factors` × lr; kept
  per probe time: min/max of the K losses (Santurkar Fig. 4a band), min/max of ‖∇L(w − ηg) − g‖ (Fig. 4b band),
  loss variation, gradient predictiveness, effective β-smoothness (Fig. 4c);
* ``ics`` (`bnlab.probes.ics`): per weight layer, ‖G − G′‖₂, cos(G, G′) and ‖G − G′‖₂ / ‖G‖₂ under the run's own
  optimizer (Santurkar Def. 2.1, Fig. 3);
* ``activations`` (`bnlab.probes.activations`): for module `activation_module` (its input, the pre-activation;
  ``"last"``: the model's last nonlinearity, named on the model in training), the
  15/50/85th percentiles, mean and std of `activation_units`, plus the overall mean/std and near-linear fraction.
  Evaluated on the first `activation_inputs` test examples in BN's batch-statistics mode (Ioffe Fig. 1), or, with
  ``activation_inputs=0``, on the step's training batch with the model exactly as it trains (``as_is``: noise
  layers draw the very noise that training step will see; Santurkar Fig. 2).

Identical (function, parameters) trials are deduplicated by the audit, so claims that plan the same run share it
(the claims plan them in `bnlab.experiments.probed_training`).
Results are plain data with every curve subsampled to at most `curve_points` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from bnlab.config import from_mapping
from bnlab.errors import BnlabError
from bnlab.probes.activations import ActivationProbe, activation_modules
from bnlab.probes.along_gradient import AlongGradientProbe
from bnlab.probes.ics import ICSProbe
from bnlab.results import finite_or_none
from bnlab.train import TrainConfig, train
from bnlab.train.loop import load_for_config
from bnlab.trials.train_trial import subsample, subsample_indices

PROBE_NAMES: tuple[str, ...] = ("along_gradient", "ics", "activations")


def _subsample(records: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    return [records[i] for i in subsample_indices(len(records), points)]


def along_gradient_series(records: list[dict[str, Any]]) -> dict[str, list]:
    return {
        "step": [r["step"] for r in records],
        "loss_min": [finite_or_none(min(r["losses"])) for r in records],
        "loss_max": [finite_or_none(max(r["losses"])) for r in records],
        "dist_min": [finite_or_none(min(r["grad_distances"])) for r in records],
        "dist_max": [finite_or_none(max(r["grad_distances"])) for r in records],
        "loss_variation": [finite_or_none(r["loss_variation"]) for r in records],
        "gradient_predictiveness": [finite_or_none(r["gradient_predictiveness"]) for r in records],
        "beta_smoothness": [finite_or_none(r["beta_smoothness"]) for r in records],
        "grad_norm": [finite_or_none(r["grad_norm"]) for r in records],
        "etas": records[0]["etas"] if records else [],
    }


def ics_series(records: list[dict[str, Any]]) -> dict[str, list]:
    return {
        "step": [r["step"] for r in records],
        "layers": records[0]["layers"] if records else [],
        "distance": [[finite_or_none(v) for v in r["distance"]] for r in records],  # (T, layers)
        "cosine": [[finite_or_none(v) for v in r["cosine"]] for r in records],
        "relative_distance": [[finite_or_none(v) for v in r["relative_distance"]] for r in records],
    }


def _activation_series(records: list[dict[str, Any]], module: str) -> dict[str, list]:
    stats = [r["modules"][module] for r in records]
    return {
        "step": [r["step"] for r in records],
        "module": module,
        "units": stats[0]["units"] if stats else [],
        "percentiles": stats[0]["percentiles"] if stats else [],
        "unit_percentiles": [s["unit_percentiles"] for s in stats],  # (T, U, P)
        "unit_mean": [s["unit_mean"] for s in stats],  # (T, U)
        "unit_std": [s["unit_std"] for s in stats],  # (T, U)
        "mean": [s["mean"] for s in stats],
        "std": [s["std"] for s in stats],
        "near_linear_fraction": [s["near_linear_fraction"] for s in stats],
    }


LAST = "last"  # activation_module: the model's last nonlinearity, named on the model being trained


def last_activation(model: nn.Module) -> str:
    """Name of the last nonlinearity module of `model` (or the identity ``act`` of a deep linear net's block: its
    input is the pre-activation all the same)."""
    names = activation_modules(model) or [n for n, _ in model.named_modules() if n.endswith(".act")]
    if not names:
        raise BnlabError(f"model {type(model).__name__} has no nonlinearity module to watch")
    return names[-1]


class _LastActivationProbe(ActivationProbe):
    """An `ActivationProbe` of the model's last nonlinearity, named at the first probe on the model in training."""

    def __call__(self, ctx: Any) -> dict[str, Any]:
        if self.modules == [LAST]:
            self.modules = [last_activation(ctx.model)]
        return super().__call__(ctx)


def probed_run(
    config: dict[str, Any],
    probes: Sequence[str] = PROBE_NAMES,
    probe_every: int = 50,
    eta_factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    activation_module: str | None = None,
    activation_units: Sequence[int] = (0, 1, 2),
    activation_inputs: int = 0,
    ics_layers: Sequence[str] | None = None,
    curve_points: int = 200,
) -> dict[str, Any]:
    """Train `config` (plain `TrainConfig` data; its ``seed`` is the trial's seed) with the named probes; see the
    module doc for what is recorded."""
    unknown = [p for p in probes if p not in PROBE_NAMES]
    if unknown:
        raise BnlabError(f"unknown probe {unknown[0]!r} (choose from {', '.join(PROBE_NAMES)})")
    cfg = from_mapping(TrainConfig, {"progress": False, "trackers": [], **config}, where="trial.config.")
    dataset = load_for_config(cfg)
    attached = []
    if "along_gradient" in probes:
        attached.append(AlongGradientProbe(probe_every, eta_factors=eta_factors))
    if "ics" in probes:
        attached.append(ICSProbe(probe_every, layers=ics_layers))
    if "activations" in probes:
        if activation_module is None:
            raise BnlabError("the activations probe needs activation_module")
        inputs = dataset.test_x[:activation_inputs] if activation_inputs > 0 else None
        activation_probe = _LastActivationProbe(probe_every, [activation_module], inputs=inputs,
                                                units=activation_units,
                                                bn_mode="train" if inputs is not None else "as_is")
        attached.append(activation_probe)
    result = train(cfg, probes=attached, dataset=dataset)
    history = result.history
    curves = subsample(history, "step", ["train_loss"], curve_points)
    curves.update(subsample(history, "eval_step", ["test_loss", "test_acc", "train_acc"], curve_points))
    curves = {k: [finite_or_none(v) if isinstance(v, float) else v for v in vals] for k, vals in curves.items()}
    out: dict[str, Any] = {
        "final": {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in result.final.items()
                  if k not in ("seconds", "steps_per_s")},
        "diverged_at_step": result.diverged_at_step,
        "curves": curves,
    }
    recs = result.probes
    if "along_gradient" in probes:
        out["along_gradient"] = along_gradient_series(_subsample(recs["along_gradient"], curve_points))
    if "ics" in probes:
        out["ics"] = ics_series(_subsample(recs["ics"], curve_points))
    if "activations" in probes:
        out["activations"] = _activation_series(_subsample(recs["activations"], curve_points),
                                                activation_probe.modules[0])
    return out
