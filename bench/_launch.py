"""Run `python -m pipeline ...` as deployed: without pandas and hypothesis, which only the baseline and the tests need.

pandera imports pandas and numpy at import time whenever they are installed (≈0.3 s and ≈70 MB per
process), and hypothesis (≈0.07 s) for its data synthesis. The project depends on neither, so a user's
install has none; the `bench` and `test` extras add them to .venv. This launcher hides them again from the
pipeline's children so the figures describe the pipeline as installed. `--with-pandas` in bench/__main__.py
skips the launcher.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys


_NOT_INSTALLED = ("pandas", "hypothesis")  # numpy is a dependency of the pipeline (its dedupe)


class _HideExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        if name.split(".")[0] in _NOT_INSTALLED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _HideExtras())
    sys.argv = ["pipeline", *sys.argv[1:]]
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
