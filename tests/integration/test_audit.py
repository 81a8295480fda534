"""The audit trail people can query: lookup, runs, status with attempts, audit export; from outputs alone.

What a data-protection officer asks: was this person's email sent to Rokt, when, to which list, and what id came back?
Every command here runs without the job's secrets in the environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import polars as pl
import pytest

from tests.conftest import ROOT, SANDBOX_CREDENTIALS, audience_job, run_cli, unsubscribe_job, write_job

SECRETS = [name for name in SANDBOX_CREDENTIALS if name.startswith("ROKT_") and name != "ROKT_PIPELINE_TEST_MINUTE_SECONDS"]


def without_secrets() -> dict[str, str]:
    """The environment of someone who reads outputs: no credential of any job is set."""
    return {key: value for key, value in os.environ.items() if key not in SECRETS}


def outputs_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env={**without_secrets(), **(env or {})},
                          capture_output=True, text=True, timeout=120, input=stdin)


@pytest.fixture(scope="module")
def big_audience(tmp_path_factory, sandbox_process):
    """250,000 addresses (with an invalid one in the middle), sent in 100,000-identifier batches."""
    folder = tmp_path_factory.mktemp("audit")
    emails = [f"Customer{i}@Example.com" for i in range(250_000)]
    emails[150_001] = "not-an-email"
    source = folder / "customers.csv"
    pl.DataFrame({"email": emails}).write_csv(source)
    job = audience_job(folder, source, columns={"email": "email"})
    path = write_job(folder, job)
    sandbox_process.reset()
    env = {**SANDBOX_CREDENTIALS, "ROKT_SANDBOX_URL": sandbox_process.url}
    done = run_cli("run", str(path), "--run-id", "big-1", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return path, folder


def test_lookup_finds_an_address_in_its_batch_and_says_not_found_otherwise(big_audience) -> None:
    path, folder = big_audience
    found = outputs_cli("lookup", str(path), "--email", "  CUSTOMER150000@example.COM ", "--json")
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    [finding] = report["found"]
    assert (finding["run_id"], finding["batch"], finding["status"]) == ("big-1", 1, "accepted")  # the middle batch
    piped = outputs_cli("lookup", str(path), "--email", "-", "--json", stdin="  CUSTOMER150000@example.COM \n")
    assert json.loads(piped.stdout) == report  # read from standard input, kept off the command line
    assert "US_Customers" in finding["destination"] and "action include" in finding["destination"]
    assert "customer150000" not in found.stdout.lower()  # never the address

    text = outputs_cli("lookup", str(path), "--email", "customer150000@example.com")
    assert text.returncode == 0 and "run big-1: sha256 " in text.stdout and "accepted" in text.stdout and "batch 1" in text.stdout

    absent = outputs_cli("lookup", str(path), "--email", "nobody@example.com")
    assert absent.returncode == 1 and "not found: no run of test-audience sent sha256" in absent.stdout
    invalid = outputs_cli("lookup", str(path), "--email", "not-an-email")
    assert invalid.returncode == 1 and "a run rejects this email (email has no @)" in invalid.stdout
    assert "not-an-email" not in invalid.stdout + invalid.stderr

    digest = hashlib.sha256(b"customer42@example.com").digest()
    for given in (digest.hex().upper(), base64.b64encode(digest).decode()):
        by_hash = outputs_cli("lookup", str(path), "--sha256", given, "--json")
        assert json.loads(by_hash.stdout)["found"][0]["batch"] == 0
    bad = outputs_cli("lookup", str(path), "--sha256", "deadbeef")
    assert bad.returncode == 2 and "not a SHA-256" in bad.stderr
    both = outputs_cli("lookup", str(path), "--email", "a@b.co", "--sha256", digest.hex())
    assert both.returncode == 2


def test_runs_and_status_read_outputs_without_any_secret(big_audience) -> None:
    path, _ = big_audience
    runs = outputs_cli("runs", str(path), "--json")
    assert runs.returncode == 0, runs.stderr
    [row] = json.loads(runs.stdout)
    assert (row["run_id"], row["state"], row["identifiers_accepted"]) == ("big-1", "delivered", 249_999)
    status = outputs_cli("status", str(path), "--run-id", "big-1")
    assert status.returncode == 0, status.stderr
    assert "3 planned; 3 accepted" in status.stdout and "attempt 1:" in status.stdout


def test_a_resumed_run_keeps_every_attempts_summary(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email\n" + "\n".join(f"person{i}@example.com" for i in range(40)) + "\n")
    sandbox.faults({"script": [{"kind": "none"}] * 2 + [{"kind": "status", "status": 400}]})
    path = str(write_job(tmp_path, audience_job(tmp_path, source, columns={"email": "email"},
                                                limits={"batch_size": 10, "concurrency": 1})))
    assert run_cli("run", path, "--run-id", "twice", env=sandbox_env).returncode == 1
    assert run_cli("run", path, "--run-id", "twice", env=sandbox_env).returncode == 0
    run_folder = next((tmp_path / "out").glob("*/twice"))
    first, second = (json.loads((run_folder / "summaries" / f"000{n}.json").read_text()) for n in (1, 2))
    assert (first["attempt"], first["identifiers_accepted"], first["batches_by_status"]) == (1, 30, {"accepted": 3, "rejected": 1})
    assert (second["attempt"], second["identifiers_accepted"], second["batches_by_status"]) == (2, 10, {"accepted": 1, "already_accepted": 3})
    assert json.loads((run_folder / "summary.json").read_text()) == second
    status = json.loads(outputs_cli("status", path, "--run-id", "twice", "--json").stdout)
    assert [attempt["attempt"] for attempt in status["attempts"]] == [1, 2]


def test_lookup_returns_the_id_rokt_gave_an_unsubscribe(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "unsubscribes.csv"
    source.write_text("email\n" + "\n".join(f"leaver{i}@example.com" for i in range(5)) + "\n")
    path = str(write_job(tmp_path, unsubscribe_job(tmp_path, source)))
    assert run_cli("run", path, "--run-id", "unsub-1", env=sandbox_env).returncode == 0
    given_id = next(r["id"] for r in sandbox.state()["received"] if r["identifiers"] == ["leaver3@example.com"])
    found = outputs_cli("lookup", path, "--email", "Leaver3@Example.com", "--json")
    assert found.returncode == 0, found.stderr
    [finding] = json.loads(found.stdout)["found"]
    assert finding["ids"]["id"] == given_id and finding["status"] == "accepted" and finding["run_id"] == "unsub-1"


def test_audit_export_loads_with_polars_and_duckdb_in_the_documented_schema(big_audience, tmp_path) -> None:
    from pipeline.audit.export import TABLES

    path, _ = big_audience
    exported = outputs_cli("audit", "export", str(path), "--to", str(tmp_path / "tables"))
    assert exported.returncode == 0, exported.stderr
    import duckdb
    for table, (_, columns) in TABLES.items():
        frame = pl.read_parquet(tmp_path / "tables" / f"{table}.parquet")
        assert frame.schema == dict((name, dtype) for name, dtype, _ in columns), table
        rows = duckdb.sql(f"select count(*) from '{tmp_path / 'tables' / table}.parquet'").fetchall()[0][0]
        assert rows == frame.height
    index = pl.read_parquet(tmp_path / "tables" / "delivery_index.parquet")
    assert index.height == 249_999 and set(index["batch"]) == {0, 1, 2}
    prefix = hashlib.sha256(b"customer7@example.com").hexdigest()[:32]
    assert index.filter(pl.col("sha256_prefix") == prefix)["batch"].to_list() == [0]  # a warehouse joins on this
    runs = pl.read_parquet(tmp_path / "tables" / "runs.parquet")
    assert runs.select("run_id", "attempt", "identifiers_accepted", "production").rows() == [("big-1", 1, 249_999, False)]
    reasons = pl.read_parquet(tmp_path / "tables" / "reject_reasons.parquet")
    assert reasons.select("reason", "rows").rows() == [("email has no @", 1)]


def test_lookup_and_export_on_s3_outputs(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email\n" + "\n".join(f"person{i}@example.com" for i in range(30)) + "\n")
    job = audience_job(tmp_path, source, columns={"email": "email"}, limits={"batch_size": 10})
    job["output"] = {"uri": f"s3://{bucket}/rokt/"}
    path = str(write_job(tmp_path, job))
    env = {**sandbox_env, **moto_s3["env"]}
    assert run_cli("run", path, "--run-id", "s3-run", env=env).returncode == 0
    found = outputs_cli("lookup", path, "--email", "person25@example.com", "--json", env=moto_s3["env"])
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["found"][0]["batch"] == 2
    exported = outputs_cli("audit", "export", path, "--to", f"s3://{bucket}/audit/", env=moto_s3["env"])
    assert exported.returncode == 0, exported.stderr
    keys = {item["Key"] for item in moto_s3["client"].list_objects_v2(Bucket=bucket, Prefix="audit/")["Contents"]}
    assert keys == {f"audit/{table}.parquet" for table in ("runs", "manifest", "reject_reasons", "delivery_index")}
