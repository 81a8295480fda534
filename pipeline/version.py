"""The package's version: one place, read by pyproject.toml (dynamic version), the User-Agent and --version."""

__version__ = "0.1.0"
