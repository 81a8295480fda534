"""Files -> the real CLI -> the sandbox over HTTP -> manifest, asserted from the sandbox's own record."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.sandbox.process import SandboxProcess
from tests.conftest import (
    ROOT, SANDBOX_CREDENTIALS, audience_job, deletion_job, partnership_job, received_identifiers, run_cli, unsubscribe_job,
    write_job,
)

CUSTOMERS_CSV = ROOT / "sample_data" / "customers.csv"
CUSTOMERS_PARQUET = ROOT / "sample_data" / "customers.parquet"
UNSUBSCRIBES_CSV = ROOT / "sample_data" / "unsubscribes.csv"
HELLO_HEX = "1753bdb368271a785887ddbfb926164f2f7c6a88f609c07ff0401c5572955206"


def expected_hex(path: Path, column: str = "Email Address") -> set[str]:
    frame = pl.read_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.read_parquet(path)
    out = set()
    for value in frame[column].to_list():
        if value is None:
            continue
        normalised = re.sub(r"\s", "", value).lower()
        if re.fullmatch(r"[^@]+@[^@.]+(\.[^@.]+)+", normalised):
            out.add(hashlib.sha256(normalised.encode()).hexdigest())
    return out


def manifest(out: Path) -> list[dict]:
    [path] = out.glob("*/*/manifest.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary(out: Path) -> dict:
    [path] = out.glob("*/*/summary.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("source", [CUSTOMERS_CSV, CUSTOMERS_PARQUET], ids=["csv", "parquet"])
def test_messy_file_is_delivered_completely_and_once(tmp_path, sandbox: SandboxProcess, sandbox_env, source) -> None:
    done = run_cli("run", str(write_job(tmp_path, audience_job(tmp_path, source, limits={"batch_size": 50}))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    sent = received_identifiers(state)
    assert sorted(sent) == sorted(expected_hex(source))  # complete, and no identifier twice
    assert all(r["action"] == "include" and r["list"] == "US_Customers" and r["account_id"] == "123456789" for r in state["received"])
    facts = summary(tmp_path / "out")
    assert (facts["rows_read"], facts["rows_rejected"], facts["duplicates_dropped"], facts["identifiers_accepted"]) == (188, 5, 3, 180)
    assert facts["rows_read"] == facts["rows_rejected"] + facts["duplicates_dropped"] + facts["identifiers_accepted"]
    lines = manifest(tmp_path / "out")
    assert [line["batch"] for line in sorted(lines, key=lambda l: l["batch"])] == [0, 1, 2, 3]
    assert all(line["status"] == "accepted" and line["http_status"] == 201 and line["ids"] == {} for line in lines)
    assert sum(line["records"] for line in lines) == 180
    for line in lines:
        assert set(line) >= {"run_id", "job", "endpoint", "batch", "records", "digest", "status", "http_status", "ids",
                             "attempts", "started_at", "finished_at", "error"}


def test_documented_vector_goes_out_as_hex(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "one.csv"
    source.write_text("Email Address\n HELLO@Example.com \n")
    assert run_cli("run", str(write_job(tmp_path, audience_job(tmp_path, source))), env=sandbox_env).returncode == 0
    assert received_identifiers(sandbox.state()) == [HELLO_HEX]


def test_prehashed_input_in_both_encodings(tmp_path, sandbox, sandbox_env) -> None:
    digests = [hashlib.sha256(f"user{i}@example.com".encode()).digest() for i in range(40)]
    values = [d.hex() if i % 2 else base64.b64encode(d).decode() for i, d in enumerate(digests)]
    source = tmp_path / "hashed.csv"
    pl.DataFrame({"h": values + ["deadbeef"]}).write_csv(source)  # valid base64 of 6 bytes: not a SHA-256
    job = audience_job(tmp_path, source, columns={"sha256": "h"}, action="exclude")
    job["source"]["max_reject_fraction"] = 0.1
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    assert sorted(received_identifiers(state)) == sorted(d.hex() for d in digests)
    assert state["received"][0]["action"] == "exclude"
    rejects = (next((tmp_path / "out").glob("*/*/rejects.csv"))).read_text().splitlines()
    assert rejects[1].endswith(",41,h,not a SHA-256 hash (expected 64 hex characters or a 44-character base64 digest)")


def test_send_emails_and_legacy_endpoint(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV, endpoint="audience_import_legacy", send="email",
                       credentials={"api_key": "${ROKT_LEGACY_API_KEY}"})
    del job["destination"]["account_id"]
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    [request] = sandbox.state()["received"]
    assert request["family"] == "audience_import_legacy" and request["key"] == "emails" and request["count"] == 180
    assert "customer001@example.com" in request["identifiers"]


def test_rejects_list_row_column_reason_and_values_only_on_request(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV)
    assert run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env).returncode == 0
    rejects = next((tmp_path / "out").glob("*/*/rejects.csv")).read_text().splitlines()
    assert rejects[0] == "source_file,row,column,reason"
    assert rejects[1] == f"{CUSTOMERS_CSV},184,Email Address,email has no @"
    assert len(rejects) == 6 and "not-an-email" not in "\n".join(rejects)

    job["output"]["uri"] = str(tmp_path / "with-values")
    job["output"]["rejects_include_values"] = True
    assert run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env).returncode == 0
    rejects = next((tmp_path / "with-values").glob("*/*/rejects.csv")).read_text().splitlines()
    assert rejects[0].endswith(",value") and rejects[1].endswith(",not-an-email")


def test_too_many_invalid_rows_stops_before_sending(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "wrong-column.csv"
    pl.DataFrame({"Email Address": [f"Customer {i}" for i in range(90)] + [f"c{i}@example.com" for i in range(10)]}).write_csv(source)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = run_cli("run", str(write_job(tmp_path, audience_job(tmp_path, source))), env={**sandbox_env, "TMPDIR": str(scratch)})
    assert done.returncode == 2
    assert "90 of 100 rows (90.0%) are invalid" in done.stderr and "Nothing was sent" in done.stderr
    assert list(scratch.iterdir()) == []  # the spill of normalised identifiers is gone
    assert "Traceback" not in done.stderr
    assert sandbox.state()["attempts"] == []
    # The first chunk, read beside the judgement, is not written either: rejects.csv is its header alone.
    (rejects,) = (tmp_path / "out").glob("*/*/rejects.csv")
    assert len(rejects.read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda job: job["destination"].update(acount_id="1"), "destination.acount_id: unknown key"),
        (lambda job: job["destination"].update(endpoint="audience"), "destination: unknown endpoint"),
        (lambda job: job["destination"].update(limits={"batch_size": 100_001}), "documented maximum of 100000"),
        (lambda job: job["source"].update(columns={"email": "E-mail"}), "column 'E-mail' not found"),
        (lambda job: job["source"].update(uri="missing.csv"), "no such file or directory: missing.csv"),
        (lambda job: job["destination"]["credentials"].update(secret_key="${NOT_SET_ANYWHERE}"), "NOT_SET_ANYWHERE is not set"),
    ],
    ids=["unknown-key", "endpoint", "batch-size", "column", "file", "env"],
)
def test_config_and_input_errors_exit_2_and_send_nothing(tmp_path, sandbox, sandbox_env, change, expected) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV)
    change(job)
    for command in ("run", "validate"):
        done = run_cli(command, str(write_job(tmp_path, job)), env=sandbox_env)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert sandbox.state()["attempts"] == []


def test_limits_are_never_exceeded(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 8})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    assert len(state["received"]) == 23
    assert state["violations"] == []
    assert state["families"]["audience_import"]["max_starts_in_window"] <= 4
    assert state["families"]["audience_import"]["max_in_flight"] <= 4
    assert state["families"]["audience_import"]["max_starts_in_window"] == 4  # and it used the budget


@pytest.mark.parametrize(("make_job", "family", "concurrency", "rows", "latency"), [
    (lambda tmp, source: audience_job(tmp, source, columns={"email": "email"}, limits={"batch_size": 10}),
     "audience_import", 4, 60, 1.5),
    (lambda tmp, source: unsubscribe_job(tmp, source), "nurture_unsubscribe", 8, 40, 0.3),
], ids=["audience_import", "nurture_unsubscribe"])
def test_concurrency_is_used_to_the_limit_and_never_beyond(tmp_path, sandbox, sandbox_env, make_job, family,
                                                           concurrency, rows, latency) -> None:
    """Answers slower than the rate refills make the concurrency limit the one that binds: the sandbox sees exactly
    `concurrency` requests in flight, never one more."""
    source = tmp_path / "people.csv"
    source.write_text("email\n" + "\n".join(f"user{i}@example.com" for i in range(rows)) + "\n")
    sandbox.faults({"latency_seconds": latency})
    done = run_cli("run", str(write_job(tmp_path, make_job(tmp_path, source))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    assert state["families"][family]["max_in_flight"] == concurrency
    assert state["violations"] == []


def test_retries_under_injected_faults(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"script": [
        {"kind": "status", "status": 503, "retry_after": "1"},
        {"kind": "status", "status": 429, "retry_after": "date"},
        {"kind": "status", "status": 500},
        {"kind": "reset_before"},
        {"kind": "reset_after"},
        {"kind": "slow", "delay_seconds": 1.5},
        {"kind": "status", "status": 502},
    ]})
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 30}, timeout_seconds=0.75)
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    assert set(received_identifiers(state)) == expected_hex(CUSTOMERS_CSV)  # everything arrived
    lines = manifest(tmp_path / "out")
    assert all(line["status"] == "accepted" for line in lines) and len(lines) == 6
    assert sum(line["attempts"] - 1 for line in lines) == 7
    assert summary(tmp_path / "out")["retries"] == 7
    assert state["violations"] == []


def test_resume_with_run_id_after_a_batch_failed(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 40, "concurrency": 1},
                       retry={"max_attempts": 2, "base_delay_seconds": 0.01})
    sandbox.faults({"script": [{"kind": "none"}, {"kind": "none"}, {"kind": "status", "status": 500}, {"kind": "status", "status": 500}]})
    path = write_job(tmp_path, job)
    first = run_cli("run", path.as_posix(), "--run-id", "nightly-1", env=sandbox_env)
    assert first.returncode == 1
    assert "rerun with --run-id nightly-1" in first.stderr
    statuses = {line["batch"]: line["status"] for line in manifest(tmp_path / "out")}
    assert statuses == {0: "accepted", 1: "accepted", 2: "failed", 3: "accepted", 4: "accepted"}

    second = run_cli("run", path.as_posix(), "--run-id", "nightly-1", env=sandbox_env)
    assert second.returncode == 0, second.stderr
    sent = received_identifiers(sandbox.state())
    assert sorted(sent) == sorted(expected_hex(CUSTOMERS_CSV))  # batch 2 arrived once, nothing else twice
    facts = summary(tmp_path / "out")
    assert facts["batches_by_status"] == {"accepted": 1, "already_accepted": 4}
    assert len(manifest(tmp_path / "out")) == 6  # appended to the same manifest


def test_a_run_id_reused_for_another_destination_sends_everything_there(tmp_path, sandbox, sandbox_env) -> None:
    """What was accepted for one list and action does not stand in for another (a job edited, or pointed from a
    sandbox to production, then run with the same --run-id); a change of limits or retries keeps it."""
    def run(**destination):
        path = write_job(tmp_path, audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 40}, **destination))
        done = run_cli("run", path.as_posix(), "--run-id", "reused", env=sandbox_env)
        assert done.returncode == 0, done.stderr
        return summary(tmp_path / "out")["batches_by_status"], done.stderr

    assert run()[0] == {"accepted": 5}
    assert run(retry={"max_attempts": 3}, timeout_seconds=10)[0] == {"already_accepted": 5}
    statuses, stderr = run(list="Other_List")  # another list alone is another destination
    assert statuses == {"accepted": 5}
    assert "5 requests accepted under this run id went to another destination" in stderr
    assert run(action="exclude", list="Other_List")[0] == {"accepted": 5}
    sent = [(r["action"], r["list"]) for r in sandbox.state()["received"]]
    assert sent == [("include", "US_Customers")] * 5 + [("include", "Other_List")] * 5 + [("exclude", "Other_List")] * 5
    assert sorted(received_identifiers(sandbox.state())) == sorted([*expected_hex(CUSTOMERS_CSV)] * 3)


def _sixty_emails(tmp_path: Path) -> Path:
    source = tmp_path / "sixty.csv"
    source.write_text("Email Address\n" + "\n".join(f"user{i}@example.com" for i in range(60)) + "\n")
    return source


def test_a_retry_after_holds_every_start_of_the_run(tmp_path, sandbox, sandbox_env) -> None:
    """A 429's Retry-After speaks for the account: no worker starts a request before it has passed."""
    sandbox.faults({"script": [{"kind": "status", "status": 429, "retry_after": "2"}]})
    job = audience_job(tmp_path, _sixty_emails(tmp_path), limits={"batch_size": 10, "concurrency": 4})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert summary(tmp_path / "out")["batches_by_status"] == {"accepted": 6}
    attempts = sandbox.state()["attempts"]
    [refused_at] = [a["at"] for a in attempts if a["status"] == 429]
    # Requests started beside the refused one are answered at once; every later one waits the 2 s (before,
    # batches 5 and 6 started at the next rate window, about 1 s after the first).
    later = [a["at"] - refused_at for a in attempts if a["at"] > refused_at + 0.5]
    assert len(attempts) == 7 and len(later) >= 3 and min(later) >= 1.95


def test_a_retry_after_longer_than_allowed_stops_the_run(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"rates": [{"rate": 1.0, "kind": "status", "status": 429, "retry_after": "600"}]})
    job = audience_job(tmp_path, _sixty_emails(tmp_path), limits={"batch_size": 5, "concurrency": 4})
    done = run_cli("run", str(write_job(tmp_path, job)), "--run-id", "told-to-wait", env=sandbox_env)
    assert done.returncode == 1
    assert "the API asked to wait 600s (retry.max_retry_after_seconds=120); rerun later with the same --run-id" in done.stderr
    # Only the requests started before the first answer; before, every one of the 12 batches was sent into the 429s.
    assert len(sandbox.state()["attempts"]) <= 4
    statuses = summary(tmp_path / "out")["batches_by_status"]
    assert statuses.get("failed", 0) <= 4 and statuses["not_sent"] >= 8


def test_dry_run_sends_nothing_and_estimates(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 10, "requests_per_second": 2})
    done = run_cli("run", str(write_job(tmp_path, job)), "--dry-run", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert sandbox.state()["attempts"] == []
    lines = manifest(tmp_path / "out")
    assert len(lines) == 18 and {line["status"] for line in lines} == {"dry_run"}
    facts = summary(tmp_path / "out")
    assert facts["estimated_send_seconds"] == 9.0 and facts["dry_run"] is True
    assert "dry run: would send 180 identifiers as 18 requests at 2/s: about 9 s" in done.stdout
    assert "accepted" not in done.stdout.splitlines()[0]  # a dry run accepts nothing and says so


@pytest.mark.parametrize("job_for", [
    lambda tmp: audience_job(tmp, CUSTOMERS_CSV),
    lambda tmp: deletion_job(tmp, ROOT / "sample_data" / "deletion_requests.csv"),  # OAuth: its session made lazily
    lambda tmp: unsubscribe_job(tmp, UNSUBSCRIBES_CSV),
    lambda tmp: partnership_job(tmp, UNSUBSCRIBES_CSV, {"email": "email"}, endpoint="network_privacy",
                                request_type="NETWORK_OPT_OUT"),
], ids=["audience_import", "data_deletion", "nurture_unsubscribe", "network_privacy"])
def test_a_dry_run_loads_no_http_stack(tmp_path, job_for) -> None:
    # requests and urllib3 were 45-50 ms of every dry run's start (bench/, issue 8); a dry run never sends.
    path = write_job(tmp_path, job_for(tmp_path))
    probe = ("import sys, pipeline.cli; code = pipeline.cli.main(['run', sys.argv[1], '--dry-run']); "
             "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'requests', 'urllib3', 'pipeline'}))")
    env = {**os.environ, **SANDBOX_CREDENTIALS, "ROKT_SANDBOX_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.splitlines()[-1] == "0 ['pipeline']", done.stderr


def test_wrong_credentials_stop_the_run_with_a_clear_message(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 10, "concurrency": 1})
    env = {**sandbox_env, "ROKT_SECRET_KEY": "rsec-wrong"}
    done = run_cli("run", str(write_job(tmp_path, job)), env=env)
    assert done.returncode == 1
    assert len(sandbox.state()["attempts"]) == 1  # stopped after the first 401, did not burn the file
    facts = summary(tmp_path / "out")
    assert facts["batches_by_status"] == {"not_sent": 17, "rejected": 1}
    assert "check the credentials" in facts["stopped_reason"]
    assert "rsec-wrong" not in json.dumps(facts) and "rsec-wrong" not in done.stderr + done.stdout


def test_no_raw_email_or_secret_in_any_output_or_log(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"script": [{"kind": "status", "status": 503}, {"kind": "status", "status": 400}]})
    job = audience_job(tmp_path, CUSTOMERS_CSV, limits={"batch_size": 20, "concurrency": 1})
    logs = ""
    for extra in ([], ["--log-format", "json", "--force"], ["--dry-run"]):  # --force: each run sends, not the register
        done = run_cli("run", str(write_job(tmp_path, job)), *extra, env=sandbox_env)
        logs += done.stdout + done.stderr
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())
    raw_emails = pl.read_csv(CUSTOMERS_CSV, infer_schema=False)["Email Address"].drop_nulls().to_list()
    needles = {re.sub(r"\s", "", e).lower() for e in raw_emails if "@" in e} | {"rsec-sandbox", "rpub-sandbox"}
    for needle in needles:
        assert needle not in written and needle not in logs
    assert '"level": "info"' in logs  # the JSON log format was really used
