"""The audit's trial functions: one floor below the claims that name them, above the sweeps that run them.

Each module holds module-level functions that take plain-data keyword arguments, train or probe a net, and return
plain data (`bnlab.sweeps.trial.Trial` names them as ``"bnlab.trials.<module>:<function>"``). They import only
from the floors below (train, probes, landscape, models, data, layers, ground): never a claim, the report or a
command engine, so a trial's cache key (its code fingerprint) moves only when the code that computes it does.
"""
