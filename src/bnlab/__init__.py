"""bnlab: a laboratory that tests, by experiment, why Batch Normalization helps deep networks train."""

from bnlab.version import __version__

__all__ = ["StudyConfig", "StudyResult", "__version__", "study"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: `import bnlab` stays light (no torch until asked)
    if name in ("study", "StudyConfig", "StudyResult"):
        # imported by name at attribute access: every module imports the root package, and a static import here
        # would put the whole study workflow into each audit trial's code fingerprint (bnlab.sweeps.trial)
        import importlib

        return getattr(importlib.import_module("bnlab.workflows.study"), name)
    raise AttributeError(f"module 'bnlab' has no attribute {name!r}")
