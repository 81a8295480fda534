"""The shipped DAGs parse cleanly, carry what a deployment needs, and parsing them touches nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.dags.airflow_setup import AIRFLOW_ENV, DAGS, airflow_cli

SHIPPED = {"rokt_audience_daily", "rokt_suppression_on_export", "rokt_data_deletion"}

# Parses dags/ in a fresh interpreter with the network, every file open and every connection or variable
# lookup watched, then says what happened.
PARSE_PROBE = r"""
import builtins, io, json, socket, sys
opened, connects, lookups = [], [], []
real_open = io.open
def watched_open(file, *args, **kwargs):
    opened.append(str(file))
    return real_open(file, *args, **kwargs)
builtins.open = io.open = watched_open
def no_network(*args, **kwargs):
    connects.append(repr(args[1:] or args))
    raise OSError("network call while parsing DAGs")
socket.socket.connect = socket.socket.connect_ex = no_network
socket.create_connection = socket.getaddrinfo = no_network

from airflow.sdk import BaseHook, Connection, Variable
def refuse(kind):
    def lookup(*args, **kwargs):
        lookups.append(kind)
        raise RuntimeError(kind + " lookup while parsing DAGs")
    return lookup
BaseHook.get_connection = staticmethod(refuse("connection"))
Connection.get = staticmethod(refuse("connection"))
Variable.get = staticmethod(refuse("variable"))

from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="rokt")
heavy = ("pipeline", "polars", "pyarrow", "pandera", "rokt_airflow.tasks")
print(json.dumps({
    "errors": bag.import_errors, "dags": sorted(bag.dag_ids), "opened": opened, "connects": connects,
    "lookups": lookups, "heavy": sorted(m for m in sys.modules if m.startswith(heavy)),
}))
"""


def test_parsing_reads_no_job_file_opens_no_connection_and_makes_no_network_call() -> None:
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env={**os.environ, **AIRFLOW_ENV},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert set(report["dags"]) == SHIPPED
    assert report["connects"] == [] and report["lookups"] == []
    assert report["heavy"] == []  # neither the library nor polars: they load inside the tasks
    project_files = [p for p in report["opened"] if p.startswith(str(ROOT)) and not p.startswith(str(ROOT / ".venv"))]
    data = [p for p in project_files if not p.endswith((".py", ".airflowignore"))]
    assert data == [], data  # no job file, export or pools file: only the DAG files themselves
    assert any(p.endswith("rokt_audience_daily.py") for p in project_files)  # the probe did watch


def test_every_shipped_dag_has_tags_owner_retries_schedule_and_its_pool(dagbag) -> None:
    from airflow.sdk import Asset

    from rokt_airflow import BUDGETS, pool_name

    assert SHIPPED <= set(dagbag)
    for dag_id in SHIPPED:
        dag = dagbag[dag_id]
        assert dag.tags and "rokt" in dag.tags, dag_id
        assert dag.schedule is not None, dag_id
        assert dag.max_active_runs == 1 and dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), (dag_id, task.task_id)
            assert task.retries >= 1, (dag_id, task.task_id)
        send = dag.get_task("send")
        endpoint = next(tag for tag in dag.tags if tag in BUDGETS)
        assert send.pool.startswith(pool_name(endpoint, "")), (dag_id, send.pool)
        assert 1 <= send.pool_slots <= BUDGETS[endpoint][0], (dag_id, send.pool_slots)
    assert isinstance(dagbag["rokt_suppression_on_export"].schedule, Asset)
    assert dagbag["rokt_suppression_on_export"].get_task("send").is_mapped  # one send per exported file
    sync = dagbag["rokt_data_deletion"].get_task("sync_open_deletion_runs")
    assert sync.trigger_rule == "all_done" and sync.upstream_task_ids == {"send"}


def test_shipped_pools_exist_with_the_budget_and_match_the_library(dagbag) -> None:
    from pipeline import load_job
    from rokt_airflow import BUDGETS

    imported = {pool["pool"]: pool for pool in json.loads(airflow_cli("pools", "list", "--output", "json").stdout)}
    for dag_id in SHIPPED:
        send = dagbag[dag_id].get_task("send")
        family = next(tag for tag in dagbag[dag_id].tags if tag in BUDGETS)
        assert send.pool in imported, f"{send.pool} is not in dags/rokt_airflow/pools.json"
        assert int(imported[send.pool]["slots"]) == BUDGETS[family][0]
    # Both audience DAGs share one account's pool, half each: together they use the whole budget, no more.
    audience = [dagbag[d].get_task("send") for d in ("rokt_audience_daily", "rokt_suppression_on_export")]
    assert {t.pool for t in audience} == {"rokt_audience_import_123456789"}
    assert sum(t.pool_slots for t in audience) == BUDGETS["audience_import"][0]
    # The audience budget is the library's documented maximum (a job that sets no limits gets it).
    job = load_job(ROOT / "configs" / "audience_include.yaml", environment={"ROKT_PUBLIC_KEY": "p", "ROKT_SECRET_KEY": "s"})
    limits = job.destination.limits
    assert (limits.concurrency, limits.requests_per_second) == BUDGETS["audience_import"]


def test_ledger_run_ids_are_airflow_run_ids_or_a_stable_valid_mapping_of_them() -> None:
    from pipeline.outputs import valid_run_id  # what run_job accepts
    from rokt_airflow.tasks import ledger_run_id

    for airflow_run_id in ("scheduled__2025-06-01T06:00:00+00:00", "asset_triggered__2025-06-01T06:00:00.123+00:00_Ab3dEf9h"):
        assert ledger_run_id(airflow_run_id) == airflow_run_id
    odd = "backfill from the UI/2025 06 01 é"
    assert valid_run_id(ledger_run_id(odd))
    assert ledger_run_id(odd) == ledger_run_id(odd) != ledger_run_id(odd + "!")  # stable, and no two runs share one
    per_file = {ledger_run_id("manual__x", uri) for uri in ("s3://b/a.csv", "s3://b/b.csv")}
    assert len(per_file) == 2 and all(valid_run_id(r) and r.startswith("manual__x.") for r in per_file)
