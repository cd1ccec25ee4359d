"""`bnlab study`: the audit's model-agnostic measurements on a user's own model and data, BN against its twin.

    result = bnlab.study(model_fn, (train_x, train_y, test_x, test_y), twin="remove-bn",
                         config=StudyConfig(seeds=3, steps=300))
    result.verdicts                      # {"C03": "refuted", "C05": ..., ...}
    result.write_report("runs/study")    # results.json, report.html, report.md, figures/, weights/

The user's file is imported from the path given, and only from there (it is their code, run as such); nothing is
imported by a name taken from a checkpoint or a results file. The twin is the same factory's model with every
BatchNorm (torch's and bnlab's) replaced by an identity (``remove-bn``: the report lists the layers replaced and
whether the layer before each has a bias), or any second factory (GroupNorm, LayerNorm, bnlab's ℓp norms). Both
nets train with the same seeds, batches, optimizer and budget through `bnlab.train` with the probes attached
(`net`), and the claims are decided by the audit's rule on per-seed paired values (`verdicts`): ICS (C03), loss
variation and gradient predictiveness (C05, C06), gradient flow at initialisation (C11), steps to a target
accuracy (C13, with ``target_acc``) and the landscape's roughness (C14), with 1-D and 2-D landscapes in BN modes
train, eval and recalibrated and the Hessian's λ_max and trace in both BN modes at the start and the end as
secondary results. With one seed no interval exists and every verdict is inconclusive.
"""

from bnlab.workflows.study.config import StudyConfig
from bnlab.workflows.study.inputs import load_data, load_factory
from bnlab.workflows.study.runner import StudyResult, study
from bnlab.workflows.study.twin import TWINS, init_confounds, make_twin, remove_bn

__all__ = ["TWINS", "StudyConfig", "StudyResult", "init_confounds", "load_data", "load_factory", "make_twin",
           "remove_bn", "study"]
