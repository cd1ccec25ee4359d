"""The package version (one home: bnlab.__version__, the CLI and results.json read it from here; pyproject.toml
repeats it, and tests/test_wheel.py checks the installed wheel reports it)."""

__version__ = "0.1.0"
