"""Fixtures for the DAG tests: a migrated Airflow database with the shipped pools, the sandbox connection,
the job files' paths and the parsed DAGs. Airflow's environment is set in airflow_setup, before any import."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT
from tests.dags.airflow_setup import AIRFLOW_HOME, DAGS, TEST_DAGS, airflow_cli


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate`, then the shipped pools file imported as a deployment would."""
    airflow_cli("db", "migrate")
    airflow_cli("pools", "import", str(DAGS / "rokt_airflow" / "pools.json"))
    return AIRFLOW_HOME


@pytest.fixture()
def rokt_connection(sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The `rokt_default` connection (Airflow's environment-variable secrets backend), pointed at the sandbox.

    The credentials exist only there: nothing sets ROKT_PUBLIC_KEY / ROKT_SECRET_KEY in the environment.
    """
    for name in ("ROKT_PUBLIC_KEY", "ROKT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    connection = {"conn_type": "http", "host": sandbox.url, "login": "rpub-sandbox", "password": "rsec-sandbox"}
    monkeypatch.setenv("AIRFLOW_CONN_ROKT_DEFAULT", json.dumps(connection))
    return connection


@pytest.fixture()
def job_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The non-secret ${VAR}s of the job files: where the exports are and where the manifests go.

    The exports folder holds the sample files as they are (for the test DAGs' undated inputs) and, for the example
    DAGs' dated inputs, a copy per day a test places with `export_on`.
    """
    exports = tmp_path / "export-dir"
    shutil.copytree(ROOT / "sample_data", exports)
    paths = {"ROKT_EXPORT_DIR": exports, "ROKT_OUTPUT_URI": tmp_path / "out"}
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    return paths


def export_on(job_paths: dict[str, Path], day: date, name: str) -> Path:
    """The sample file `name` as the export of `day`: <exports>/<YYYY-MM-DD>/<name> (a file of its own)."""
    dated = job_paths["ROKT_EXPORT_DIR"] / day.isoformat() / name
    dated.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "sample_data" / name, dated)
    return dated


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Iterator[Any]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bags = {name: BundleDagBag(dag_folder=str(path), bundle_path=path, bundle_name=name)
            for name, path in (("rokt", DAGS), ("rokt-tests", TEST_DAGS))}
    for bag in bags.values():
        assert bag.import_errors == {}
    yield {dag_id: dag for bag in bags.values() for dag_id, dag in bag.dags.items()}
