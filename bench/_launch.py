"""Run `python -m pipeline ...` as deployed: without pandas and hypothesis, which only the baseline and the tests need.

pandera imports pandas and numpy at import time whenever they are installed (≈0.3 s and ≈70 MB per
process), and hypothesis (≈0.07 s) for its data synthesis. The project depends on neither, so a user's
install has none; the `bench` and `test` extras add them to .venv. This launcher hides them again from the
pipeline's children so the figures describe the pipeline as installed. `--with-pandas` in bench/__main__.py
skips the launcher.

    python bench/_launch.py -m MODULE ARGS...    # python -m MODULE ARGS..., from the project's root
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys
from pathlib import Path


_NOT_INSTALLED = ("pandas", "hypothesis")  # numpy is a dependency of the pipeline (its dedupe)


class _HideExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        if name.split(".")[0] in _NOT_INSTALLED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _HideExtras())
    if sys.argv[1:2] != ["-m"] or len(sys.argv) < 3:
        raise SystemExit("usage: python bench/_launch.py -m MODULE ARGS...")
    module, arguments = sys.argv[2], sys.argv[3:]
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # as `python -m` from the project's root
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
