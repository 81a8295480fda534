"""Run `python -m pipeline ...` as deployed: without pandas, which only the baseline needs.

pandera imports pandas and numpy at import time whenever they are installed (≈0.3 s and ≈70 MB per
process). The project does not depend on pandas, so a user's install has none; the `bench` extra adds it
to .venv for the hand-written baseline. This launcher hides it again from the pipeline's children so the
figures describe the pipeline as installed. `--with-pandas` in bench/__main__.py skips the launcher.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys


class _HidePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        if name.split(".")[0] == "pandas":  # numpy is a dependency of the pipeline (its dedupe filter)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _HidePandas())
    sys.argv = ["pipeline", *sys.argv[1:]]
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
