"""S3 sources and outputs against a real S3 API (moto in server mode): the export layouts warehouses write,
manifests, markers, globs, pagination, errors, S3 outputs and resume from an S3 ledger after a kill."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from pipeline.batching import batch_digest
from tests.conftest import ROOT, audience_job, free_port, read_summary, run_cli, write_job


def emails(start: int, count: int) -> list[str]:
    return [f" User{i}@Example.com" for i in range(start, start + count)]


def hexes(values: list[str]) -> set[str]:
    return {hashlib.sha256(v.strip().lower().encode()).hexdigest() for v in values}


def csv_bytes(values: list[str], header: bool = True) -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"email": values}).write_csv(buffer, include_header=header)
    return buffer.getvalue()


def parquet_bytes(values: list[str]) -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"email": values}).write_parquet(buffer)
    return buffer.getvalue()


def put(client, bucket: str, key: str, body: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body)


def s3_job(tmp_path, uri, **source):
    job = audience_job(tmp_path, uri, columns={"email": "email"}, limits={"batch_size": 100})
    job["source"].update(source)
    return job


def run(tmp_path, job, sandbox_env, moto_s3, *extra):
    return run_cli("run", str(write_job(tmp_path, job)), *extra, env={**sandbox_env, **moto_s3["env"]})


def sent(sandbox) -> list[str]:
    return [h for r in sandbox.state()["received"] for h in r["identifiers"]]


def test_snowflake_unload_gzip_without_header(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    parts = [emails(0, 150), emails(150, 150)]
    for n, part in enumerate(parts):
        put(client, bucket, f"unload/customers/data_0_0_{n}.csv.gz", gzip.compress(csv_bytes(part, header=False)))
    job = s3_job(tmp_path, f"s3://{bucket}/unload/customers/", has_header=False)
    job["source"]["columns"] = {"email": "column_1"}
    done = run(tmp_path, job, sandbox_env, moto_s3)
    assert done.returncode == 0, done.stderr
    assert sorted(sent(sandbox)) == sorted(hexes(parts[0] + parts[1]))


def test_redshift_unload_with_manifest(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    listed, stray = emails(0, 120), emails(500, 50)
    put(client, bucket, "redshift/0000_part_00.parquet", parquet_bytes(listed[:60]))
    put(client, bucket, "redshift/0001_part_00.parquet", parquet_bytes(listed[60:]))
    put(client, bucket, "redshift/0002_part_00.parquet", parquet_bytes(stray))  # not in the manifest: not read
    manifest = {"entries": [{"url": f"s3://{bucket}/redshift/000{n}_part_00.parquet", "mandatory": True} for n in (0, 1)]}
    put(client, bucket, "redshift/manifest", json.dumps(manifest).encode())
    job = s3_job(tmp_path, f"s3://{bucket}/redshift/", manifest=f"s3://{bucket}/redshift/manifest")
    done = run(tmp_path, job, sandbox_env, moto_s3)
    assert done.returncode == 0, done.stderr
    assert sorted(sent(sandbox)) == sorted(hexes(listed))

    manifest["entries"].append({"url": f"s3://{bucket}/redshift/0009_part_00.parquet", "mandatory": True})
    put(client, bucket, "redshift/manifest", json.dumps(manifest).encode())
    missing = run(tmp_path, job, sandbox_env, moto_s3)
    assert missing.returncode == 2 and "mandatory file" in missing.stderr and "0009_part_00.parquet is missing" in missing.stderr


def test_bigquery_export_by_glob(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    put(client, bucket, "bq/2026-11-21/customers-000000000000.csv", csv_bytes(emails(0, 40)))
    put(client, bucket, "bq/2026-11-22/customers-000000000000.csv", csv_bytes(emails(40, 40)))
    put(client, bucket, "bq/2026-11-22/customers-000000000001.csv", csv_bytes(emails(80, 40)))
    put(client, bucket, "bq/2026-10-30/customers-000000000000.csv", csv_bytes(emails(900, 40)))  # outside the glob
    done = run(tmp_path, s3_job(tmp_path, f"s3://{bucket}/bq/2026-11-*/customers-*.csv"), sandbox_env, moto_s3)
    assert done.returncode == 0, done.stderr
    assert sorted(sent(sandbox)) == sorted(hexes(emails(0, 120)))
    facts = read_summary(tmp_path / "out")
    assert [f["uri"] for f in facts["source_files"]] == [
        f"s3://{bucket}/bq/2026-11-21/customers-000000000000.csv",
        f"s3://{bucket}/bq/2026-11-22/customers-000000000000.csv",
        f"s3://{bucket}/bq/2026-11-22/customers-000000000001.csv",
    ]
    assert all(f["etag"] and f["size"] > 0 for f in facts["source_files"]) and len(facts["source_fingerprint"]) == 64


def test_spark_output_with_success_marker(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    job_id = uuid.uuid4()
    prefix = "spark/audience"
    put(client, bucket, f"{prefix}/part-00000-{job_id}-c000.snappy.parquet", parquet_bytes(emails(0, 70)))
    put(client, bucket, f"{prefix}/part-00001-{job_id}-c000.snappy.parquet", parquet_bytes(emails(70, 70)))
    put(client, bucket, f"{prefix}/_committed_123", b"{}")
    put(client, bucket, f"{prefix}_$folder$", b"")
    job = s3_job(tmp_path, f"s3://{bucket}/{prefix}/", require_marker="_SUCCESS")
    waiting = run(tmp_path, job, sandbox_env, moto_s3)
    assert waiting.returncode == 2 and "_SUCCESS does not exist yet" in waiting.stderr and "refusing to start" in waiting.stderr
    assert sandbox.state()["attempts"] == []
    put(client, bucket, f"{prefix}/_SUCCESS", b"")
    done = run(tmp_path, job, sandbox_env, moto_s3)
    assert done.returncode == 0, done.stderr
    assert sorted(sent(sandbox)) == sorted(hexes(emails(0, 140)))


def test_pagination_past_a_thousand_keys_and_the_source_override(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: put(client, bucket, f"many/part-{n:05d}.csv", csv_bytes(emails(n, 1))), range(1050)))
    put(client, bucket, "many/empty.csv", b"")  # zero-byte objects are skipped
    job = s3_job(tmp_path, "nowhere.csv")  # replaced on the command line, as an S3 event handler would
    done = run(tmp_path, job, sandbox_env, moto_s3, "--source-uri", f"s3://{bucket}/many/")
    assert done.returncode == 0, done.stderr
    assert len(set(sent(sandbox))) == 1050 and read_summary(tmp_path / "out")["rows_read"] == 1050


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://no-such-bucket-anywhere/x.csv", "no such bucket"),
    ("s3://{bucket}/missing/file.csv", "no data objects under"),
    ("s3://{bucket}/missing/*.csv", "no data objects match"),
])
def test_missing_bucket_or_key_is_a_clear_error(tmp_path, sandbox, sandbox_env, moto_s3, bucket, uri, message) -> None:
    done = run(tmp_path, s3_job(tmp_path, uri.format(bucket=bucket)), sandbox_env, moto_s3)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and done.stderr.count("error:") == 1


def test_access_denied_is_a_clear_error(tmp_path, sandbox, sandbox_env) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "moto did not start within 30 s"
                time.sleep(0.1)
        env = {**sandbox_env, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "nope", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        done = run_cli("run", str(write_job(tmp_path, s3_job(tmp_path, "s3://locked/exports/"))), env=env)
        assert done.returncode == 2, done.stderr
        assert "access denied to s3://locked/exports/" in done.stderr and "check the credentials" in done.stderr
        assert "nope" not in done.stderr and "Traceback" not in done.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_outputs_to_s3_with_encryption(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    put(client, bucket, "in/customers.csv", csv_bytes(emails(0, 250) + ["not-an-email"]))
    job = s3_job(tmp_path, f"s3://{bucket}/in/customers.csv")
    job["output"] = {"uri": f"s3://{bucket}/runs/", "server_side_encryption": "AES256"}
    done = run(tmp_path, job, sandbox_env, moto_s3, "--run-id", "s3-out")
    assert done.returncode == 0, done.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/")["Contents"])
    base = "runs/test-audience/s3-out/"
    assert {base + "summary.json", base + "rejects.csv", base + "plan.json"} <= set(keys)
    segments = [k for k in keys if k.startswith(base + "manifest/")]
    lines = [json.loads(line) for k in segments for line in client.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]
    assert sorted(line["batch"] for line in lines) == [0, 1, 2]
    assert client.head_object(Bucket=bucket, Key=base + "summary.json")["ServerSideEncryption"] == "AES256"
    assert b"not-an-email" not in client.get_object(Bucket=bucket, Key=base + "rejects.csv")["Body"].read()
    status = run_cli("status", "--config", str(tmp_path / "job.yaml"), "--run-id", "s3-out", env={**sandbox_env, **moto_s3["env"]})
    assert "3 planned; 3 accepted, 0 pending" in status.stdout


@pytest.mark.parametrize("kill_at", ["after_ledger:7", "after_answer:7"])
def test_resume_from_the_s3_ledger_after_the_worker_is_lost(tmp_path, sandbox, sandbox_env, moto_s3, bucket, kill_at) -> None:
    client = moto_s3["client"]
    put(client, bucket, "in/customers.csv", csv_bytes(emails(0, 600)))
    job = s3_job(tmp_path, f"s3://{bucket}/in/customers.csv")
    job["destination"]["limits"] = {"batch_size": 25, "concurrency": 2}
    flush_records = 3
    job["output"] = {"uri": f"s3://{bucket}/runs/", "ledger_flush_records": flush_records, "ledger_flush_seconds": 60}
    path = str(write_job(tmp_path, job))
    env = {**os.environ, **sandbox_env, **moto_s3["env"]}
    killed = subprocess.run([sys.executable, "-m", "pipeline", "run", path, "--run-id", "lost-worker"], cwd=ROOT,
                            env={**env, "ROKT_PIPELINE_KILL_AT": kill_at}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    before = len(sandbox.state()["received"])
    # a new worker: nothing local survives (the ledger is read back from S3)
    resumed = subprocess.run([sys.executable, "-m", "pipeline", "run", path, "--run-id", "lost-worker"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    requests = sandbox.state()["received"]
    per_digest = Counter(batch_digest(r["identifiers"]) for r in requests)
    assert {h for r in requests for h in r["identifiers"]} == hexes(emails(0, 600))
    resent = sum(n - 1 for n in per_digest.values())
    # the README's bound: what was answered but not yet in an S3 segment, plus what was in flight
    assert resent <= (flush_records - 1) + 2, (before, resent)
