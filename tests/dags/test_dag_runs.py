"""`dag.test()` end to end: real Airflow tasks, the real library, the sandbox process over HTTP.

Credentials reach the tasks only through the Airflow connection (AIRFLOW_CONN_ROKT_DEFAULT); the assertions
read the sandbox's own record of what it received and the manifest the run wrote.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.batching import batch_digest
from pipeline.ledger import parse_lines
from tests.conftest import ROOT, received_identifiers
from tests.dags.conftest import export_on
from tests.integration.test_audience_run import expected_hex

CUSTOMERS_CSV = ROOT / "sample_data" / "customers.csv"
SUPPRESSION_CSV = ROOT / "sample_data" / "suppression_hashed.csv"
SECRETS = ("rpub-sandbox", "rsec-sandbox")


def run_dag(dagbag: dict[str, Any], dag_id: str, **kwargs: Any) -> Any:
    return dagbag[dag_id].test(**kwargs)


def task_instances(dag_run: Any) -> dict[tuple[str, int], Any]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        session.expunge_all()
    return {(ti.task_id, ti.map_index): ti for ti in tis}


def returned(dag_run: Any, task_id: str = "send", map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=map_index, key="return_value",
        ).one()
        return XComModel.deserialize_value(row)


def task_logs(capfd: Any, caplog: Any) -> str:
    """Everything the run logged: the log records (task loggers) and whatever reached stdout/stderr."""
    captured = capfd.readouterr()
    return caplog.text + captured.out + captured.err


def manifest_lines(path: Path) -> list[dict[str, Any]]:
    """Every readable line: a worker may be half way through appending the last one."""
    return parse_lines(path.read_bytes())[0]


def expected_sha256_column(path: Path) -> set[str]:
    import base64

    out = set()
    for value in pl.read_csv(path, infer_schema=False)["email_sha256"].drop_nulls().to_list():
        value = value.strip()
        if re.fullmatch(r"[0-9a-fA-F]{64}", value):
            out.add(value.lower())
        elif re.fullmatch(r"[A-Za-z0-9+/]{43}=", value):
            out.add(base64.b64decode(value).hex())
    return out


def test_daily_audience_dag_sends_everything_once_under_the_airflow_run_id(
    dagbag, sandbox, rokt_connection, job_paths, capfd, caplog,
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    day = datetime(2025, 6, 1, 6, tzinfo=timezone.utc)
    export_on(job_paths, day.date(), "customers.csv")
    dag_run = run_dag(dagbag, "rokt_audience_daily", logical_date=day, run_after=day)
    assert dag_run.state == "success"
    state = sandbox.state()
    assert sorted(received_identifiers(state)) == sorted(expected_hex(CUSTOMERS_CSV))  # all of it, once
    assert {(r["action"], r["list"], r["account_id"]) for r in state["received"]} == {("include", "US_Customers", "123456789")}

    summary = returned(dag_run)  # the XCom a downstream task reads
    manifest = job_paths["ROKT_OUTPUT_URI"] / "us-customers-daily" / dag_run.run_id / "manifest.jsonl"
    assert summary["ledger_run_id"] == summary["run_id"] == dag_run.run_id  # Airflow's run id is the ledger's
    assert summary["manifest"] == str(manifest) and manifest.exists()
    assert summary["identifiers_accepted"] == 180 and summary["batches_by_status"] == {"accepted": 1}
    assert [line["status"] for line in manifest_lines(manifest)] == ["accepted"]
    assert (manifest.parent / "summary.json").exists()

    # The connection's keys are registered with Airflow's masker, which redacts every task log line.
    assert redact(f"{SECRETS[0]} {SECRETS[1]}") == "*** ***"
    output = task_logs(capfd, caplog)
    assert f"manifest: {manifest}" in output
    raw_emails = {re.sub(r"\s", "", e).lower() for e in pl.read_csv(CUSTOMERS_CSV, infer_schema=False)["Email Address"].drop_nulls() if "@" in e}
    for needle in (*SECRETS, *raw_emails):
        assert needle not in output


def test_a_failed_batch_fails_the_task_and_the_airflow_retry_resumes_without_resending(
    dagbag, sandbox, rokt_connection, job_paths, capfd, caplog,
) -> None:
    # 5 batches of 40, at most 2 attempts each: the first 2 requests succeed, the next 6 fail, so on the
    # first try 2 batches are accepted and 3 fail after their 2 attempts; the task fails, Airflow retries it.
    sandbox.faults({"script": [{"kind": "none"}, {"kind": "none"}] + [{"kind": "status", "status": 500}] * 6})
    dag_run = run_dag(dagbag, "rokt_test_small_batches")
    assert dag_run.state == "success"
    assert task_instances(dag_run)[("send", -1)].try_number == 2  # it failed once and the retry finished it

    state = sandbox.state()
    sent = received_identifiers(state)
    assert sorted(sent) == sorted(expected_hex(CUSTOMERS_CSV))  # every identifier arrived exactly once
    assert len(state["received"]) == 5 and len(state["attempts"]) == 8 + 3  # no accepted batch was sent again
    manifest = job_paths["ROKT_OUTPUT_URI"] / "test-small-batches" / dag_run.run_id / "manifest.jsonl"
    lines = manifest_lines(manifest)
    accepted = [line["batch"] for line in lines if line["status"] == "accepted"]
    assert sorted(accepted) == [0, 1, 2, 3, 4]  # each batch accepted once, over both tries, in one manifest
    assert sum(line["status"] == "failed" for line in lines) == 3
    summary = returned(dag_run)
    assert summary["batches_by_status"] == {"accepted": 3, "already_accepted": 2}
    assert returned(dag_run, "load_manifest") == len(lines) == 8  # downstream got the manifest of both tries

    output = task_logs(capfd, caplog)
    failed = [line for line in output.splitlines() if "identifiers are not accepted yet" in line]
    assert failed, "the first try's failure message is not in the task log"
    assert "100 of 180 identifiers are not accepted yet (batches: 2 accepted, 3 failed)" in failed[0]
    assert f"resumes ledger run {dag_run.run_id}" in failed[0] and "--run-id" in failed[0]


def test_the_task_uses_only_its_share_of_the_pool_budget(dagbag, sandbox, rokt_connection, job_paths) -> None:
    # rokt_test_small_batches takes 2 of the pool's 4 slots: its job allows 4 in flight and 4/s, the task 2 and 2/s.
    dag_run = run_dag(dagbag, "rokt_test_small_batches")
    assert dag_run.state == "success"
    family = sandbox.state()["families"]["audience_import"]
    assert family["max_in_flight"] <= 2 and family["max_starts_in_window"] <= 2
    assert family["max_starts_in_window"] == 2  # and it does use its share
    assert returned(dag_run, "load_manifest") == 5  # the downstream task read the manifest the summary named


def test_wrong_credentials_fail_the_task_at_once_without_retries(
    dagbag, sandbox, rokt_connection, job_paths, monkeypatch, capfd, caplog,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ROKT_DEFAULT", json.dumps({**rokt_connection, "password": "rsec-wrong"}))
    dag_run = run_dag(dagbag, "rokt_test_small_batches")
    assert dag_run.state == "failed"
    # Failed for the right reason (a task that never started fails too): the API refused the credentials.
    assert "check the credentials in the Airflow connection 'rokt_default'" in task_logs(capfd, caplog)
    send = task_instances(dag_run)[("send", -1)]
    assert send.state == "failed" and send.try_number == 1  # a 401 is not worth a retry
    assert len(sandbox.state()["attempts"]) <= 2  # the requests already in flight (its share: 2), not 5 batches


def test_export_triggered_dag_sends_the_exact_file_named_by_the_asset_event(
    dagbag, sandbox, rokt_connection, job_paths, tmp_path, monkeypatch,
) -> None:
    from airflow.models import dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    exported = tmp_path / "exports" / "suppression-2025-06-01.csv"
    exported.parent.mkdir()
    producer = run_dag(dagbag, "warehouse_suppression_export", run_conf={"from": str(SUPPRESSION_CSV), "to": str(exported)})
    assert producer.state == "success" and exported.exists()

    # dag.test() always makes a manual run; the scheduler would make an asset-triggered one that consumes
    # the queued events. Hand the run the producer's real event the way the scheduler does.
    create = dagrun_module.get_or_create_dagrun

    def consuming_the_export_events(**kwargs: Any) -> Any:
        session = kwargs["session"]
        run = create(**kwargs)
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.name == "rokt_suppression_export",
                                                     AssetEvent.source_run_id == producer.run_id)
        ).all()
        run.consumed_asset_events.extend(events)
        session.commit()
        return run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", consuming_the_export_events)
    dag_run = run_dag(dagbag, "rokt_suppression_on_export")
    assert dag_run.state == "success"

    state = sandbox.state()
    assert sorted(received_identifiers(state)) == sorted(expected_sha256_column(SUPPRESSION_CSV))
    assert {r["action"] for r in state["received"]} == {"exclude"}
    assert returned(dag_run, "source_uris") == [str(exported)]
    summary = returned(dag_run, "send", 0)
    assert summary["ledger_run_id"].startswith(dag_run.run_id + ".")
    manifest = Path(summary["manifest"])
    assert manifest.parent == job_paths["ROKT_OUTPUT_URI"] / "suppression-on-export" / summary["ledger_run_id"]
    assert {line["status"] for line in manifest_lines(manifest)} == {"accepted"}


def test_export_triggered_dag_without_a_source_uri_fails_and_sends_nothing(
    dagbag, sandbox, rokt_connection, job_paths, capfd, caplog,
) -> None:
    dag_run = run_dag(dagbag, "rokt_suppression_on_export")
    assert dag_run.state == "failed"
    assert "no source to send: the asset event that triggers this DAG must carry" in task_logs(capfd, caplog)
    assert task_instances(dag_run)[("source_uris", -1)].try_number == 1
    assert sandbox.state()["attempts"] == []


# Runs one DAG run in a process of its own, so the test can kill it like a crashed worker.
WORKER = r"""
import sys
from datetime import datetime
from airflow.dag_processing.dagbag import BundleDagBag
folder, dag_id, when = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
sys.path.append(sys.argv[4])  # the bundle holding rokt_airflow/, as in a deployment
bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="rokt-tests")
bag.get_dag(dag_id).test(logical_date=when, run_after=when)
"""


def test_after_a_worker_crash_the_rerun_resumes_and_never_resends_a_recorded_batch(
    dagbag, sandbox, rokt_connection, job_paths,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import datetime, timezone

    from tests.dags.airflow_setup import DAGS, TEST_DAGS

    when = datetime(2025, 6, 1, 6, 0, tzinfo=timezone.utc)  # the same DAG run (same run id) both times
    log = (job_paths["ROKT_OUTPUT_URI"].parent / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(TEST_DAGS), "rokt_test_small_batches", when.isoformat(),
                               str(DAGS)], stdout=subprocess.DEVNULL, stderr=log)
    out = job_paths["ROKT_OUTPUT_URI"] / "test-small-batches"
    deadline = time.monotonic() + 60
    recorded: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline and len(recorded) < 2:  # kill it once two batches are on record
            manifests = list(out.glob("*/manifest.jsonl"))
            recorded = [line for line in manifest_lines(manifests[0]) if line["status"] == "accepted"] if manifests else []
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait(timeout=30)
    log.close()
    assert len(recorded) >= 2, "the worker never got two batches accepted:\n" + Path(log.name).read_text()[-3000:]
    [run_dir] = [path for path in out.iterdir() if not path.name.startswith("_")]  # _register: the delivery register
    recorded = [line for line in manifest_lines(run_dir / "manifest.jsonl") if line["status"] == "accepted"]
    assert len(recorded) < 5  # it really died part way

    dag_run = run_dag(dagbag, "rokt_test_small_batches", logical_date=when, run_after=when)
    assert dag_run.state == "success" and dag_run.run_id == run_dir.name  # the same ledger run, resumed
    state = sandbox.state()
    assert set(received_identifiers(state)) == expected_hex(CUSTOMERS_CSV)  # everything arrived
    received = [batch_digest(r["identifiers"]) for r in state["received"]]
    for line in recorded:
        assert received.count(line["digest"]) == 1, f"batch {line['batch']} was on record and was sent again"
    assert len(received) <= 5 + 2  # at most the batches in flight at the crash (the task's share: 2) went twice
    assert returned(dag_run)["batches_by_status"]["already_accepted"] == len(recorded)


def test_deletion_dag_submits_then_follows_open_runs_until_every_task_is_final(
    dagbag, sandbox, job_paths, monkeypatch,
) -> None:
    from pipeline.config import load_job
    from pipeline.deletions import open_runs

    connection = {"conn_type": "http", "host": sandbox.url, "login": "sandbox-app-id", "password": "sandbox-app-secret"}
    monkeypatch.setenv("AIRFLOW_CONN_ROKT_DELETION", json.dumps(connection))
    for name in ("ROKT_APP_ID", "ROKT_APP_SECRET"):
        monkeypatch.delenv(name, raising=False)

    day_one = datetime(2025, 6, 1, 7, tzinfo=timezone.utc)
    export_on(job_paths, day_one.date(), "deletion_requests.csv")
    first = run_dag(dagbag, "rokt_data_deletion", logical_date=day_one, run_after=day_one)
    assert first.state == "success"
    [task] = sandbox.state()["data_deletion"]["tasks"]
    first_manifest = Path(returned(first)["manifest"])
    assert [line["ids"]["taskId"] for line in manifest_lines(first_manifest) if line.get("status") == "accepted"] == [task["taskId"]]
    synced = returned(first, "sync_open_deletion_runs")
    assert synced["open_runs"] == [first.run_id] and synced["synced"][0]["by_status"] == {"PENDING": 1}

    sandbox.advance_days(31)  # past the documented 30 days: Rokt has actioned the first run's task
    day_two = datetime(2025, 7, 2, 7, tzinfo=timezone.utc)
    export_on(job_paths, day_two.date(), "deletion_requests.csv")
    second = run_dag(dagbag, "rokt_data_deletion", logical_date=day_two, run_after=day_two)
    assert second.state == "success"
    synced = {r["run_id"]: r for r in returned(second, "sync_open_deletion_runs")["synced"]}
    assert synced[first.run_id]["by_status"] == {"ACTIONED": 1} and synced[first.run_id]["open"] == 0
    assert synced[second.run_id]["open"] == 1
    deletion_job = next(p for p in (ROOT / "dags" / "jobs").glob("*.yaml") if "endpoint: data_deletion" in p.read_text())
    job = load_job(deletion_job, environment={**os.environ, "ROKT_APP_ID": "x", "ROKT_APP_SECRET": "y"})
    assert open_runs(job) == [second.run_id]  # the first run is closed: the next day's sync leaves it alone


def _s3_lines(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every manifest line the run has put on S3 so far (its ledger segments)."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    lines: list[dict[str, Any]] = []
    for item in sorted(listed, key=lambda item: item["Key"]):
        if "/manifest/" in item["Key"]:
            lines += parse_lines(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())[0]
    return lines


def test_a_retry_on_another_worker_resumes_from_the_s3_ledger(
    dagbag, sandbox, rokt_connection, job_paths, moto_s3, bucket, tmp_path, monkeypatch,
) -> None:
    """The first worker dies part way; the retry runs in a fresh process, in another folder, with nothing of the
    first one's disk: the ledger on S3 is all it has, and it is enough (nothing recorded is sent again)."""
    import subprocess
    import sys
    import time

    from tests.dags.airflow_setup import DAGS, TEST_DAGS

    for name, value in moto_s3["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROKT_OUTPUT_URI", f"s3://{bucket}/rokt")
    client = moto_s3["client"]
    when = datetime(2025, 6, 2, 6, 0, tzinfo=timezone.utc)
    worker_args = [sys.executable, "-c", WORKER, str(TEST_DAGS), "rokt_test_small_batches", when.isoformat(), str(DAGS)]

    def worker(folder: Path) -> subprocess.Popen:
        folder.mkdir()
        log = (folder / "worker.log").open("w")
        return subprocess.Popen(worker_args, cwd=folder, env={**os.environ, "TMPDIR": str(folder)},
                                stdout=subprocess.DEVNULL, stderr=log)

    first = worker(tmp_path / "worker-1")
    recorded: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and len(recorded) < 2:  # killed once two batches are on record on S3
            recorded = [line for line in _s3_lines(client, bucket, "rokt/") if line.get("status") == "accepted"]
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert len(recorded) >= 2, (tmp_path / "worker-1" / "worker.log").read_text()[-3000:]
    assert len(recorded) < 5  # it really died part way

    second = worker(tmp_path / "worker-2")  # another machine: a fresh process, folder and temporary directory
    assert second.wait(timeout=180) == 0, (tmp_path / "worker-2" / "worker.log").read_text()[-3000:]
    state = sandbox.state()
    assert set(received_identifiers(state)) == expected_hex(CUSTOMERS_CSV)  # everything arrived
    received = [batch_digest(r["identifiers"]) for r in state["received"]]
    for line in recorded:
        assert received.count(line["digest"]) == 1, f"batch {line['batch']} was on record on S3 and was sent again"


def test_a_local_output_under_a_remote_executor_is_refused_before_sending(
    dagbag, sandbox, rokt_connection, job_paths, monkeypatch, capfd, caplog,
) -> None:
    import rokt_airflow

    monkeypatch.setattr(rokt_airflow, "executors", lambda: ["CeleryExecutor"])
    day = datetime(2025, 6, 3, 6, tzinfo=timezone.utc)
    export_on(job_paths, day.date(), "customers.csv")
    dag_run = run_dag(dagbag, "rokt_audience_daily", logical_date=day, run_after=day)
    assert dag_run.state == "failed"
    send = task_instances(dag_run)[("send", -1)]
    assert send.try_number == 1  # not retried: a retry would fail the same way
    assert sandbox.state()["attempts"] == []  # refused before anything was sent
    assert "a folder on this worker, but this Airflow runs tasks on CeleryExecutor" in task_logs(capfd, caplog)
    assert "must be shared by every worker" in rokt_airflow._output_warning({}, False)  # the DAG's docs say so
    assert rokt_airflow._output_warning({"output.uri": "s3://bucket/rokt"}, False) == ""
