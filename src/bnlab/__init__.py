"""bnlab: a laboratory that tests, by experiment, why Batch Normalization helps deep networks train."""

from bnlab.version import __version__

__all__ = ["StudyConfig", "StudyResult", "__version__", "study"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: `import bnlab` stays light (no torch until asked)
    if name in ("study", "StudyConfig", "StudyResult"):
        from bnlab.workflows import study as _study

        return getattr(_study, name)
    raise AttributeError(f"module 'bnlab' has no attribute {name!r}")
