"""Real Airflow for the DAG tests: a throw-away AIRFLOW_HOME (its database is migrated by a fixture).

The environment is set here, at import, because Airflow reads its configuration when it is first imported.
Two DAG bundles: the shipped dags/ and tests/dags/dag_files (test DAGs built by the same factory).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

DAGS = ROOT / "dags"
TEST_DAGS = Path(__file__).resolve().parent / "dag_files"
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="rokt-airflow-home-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, True)


def _bundle(name: str, path: Path) -> dict[str, Any]:
    return {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 0}}


AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([_bundle("rokt", DAGS), _bundle("rokt-tests", TEST_DAGS)]),
    "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
}
os.environ.update(AIRFLOW_ENV)
# A deployment has the bundle holding rokt_airflow/ on sys.path; the test DAG files import it too.
sys.path.append(str(DAGS))

try:
    import airflow  # noqa: F401
except ImportError:  # not a skip: CI must run these
    pytest.fail("Airflow is not installed: run `make setup` (it installs the project's [airflow] extra)", pytrace=False)


def airflow_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # Airflow 3.2 logs INFO lines (plugin set-up) to stdout, before a command's JSON output.
    done = subprocess.run([sys.executable, "-m", "airflow", *args],
                          env={**os.environ, **AIRFLOW_ENV, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


