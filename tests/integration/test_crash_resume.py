"""Kill the real CLI mid-run, resume with the same run id, and check the sandbox's record.

Promise: every identifier is delivered; only requests in flight at the kill may be sent again; a request the
ledger shows accepted is never sent again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from pipeline.batching import batch_digest
from tests.conftest import (
    ROOT, audience_job, partnership_job, read_manifest, run_cli, unsubscribe_job, valid_normalised_emails, write_job,
)

CUSTOMERS = ROOT / "sample_data" / "customers.csv"
UNSUBSCRIBES = ROOT / "sample_data" / "unsubscribes.csv"
CONCURRENCY = 4


def accepted_before(tmp_path) -> list[dict]:
    try:
        return [line for line in read_manifest(tmp_path / "out") if line.get("status") == "accepted"]
    except ValueError:  # no manifest yet: killed before the first request
        return []


@pytest.mark.parametrize("kill_at", ["after_prepare:1", "after_answer:5", "after_ledger:5", "external"])
def test_audience_run_killed_and_resumed(tmp_path, sandbox, sandbox_env, kill_at) -> None:
    job = audience_job(tmp_path, CUSTOMERS, limits={"batch_size": 10, "requests_per_second": 4, "concurrency": CONCURRENCY})
    path = str(write_job(tmp_path, job))
    killed = _run_and_kill(path, "crash-1", sandbox_env, kill_at, sandbox)
    assert killed == -signal.SIGKILL
    before = {line["digest"] for line in accepted_before(tmp_path)}

    resumed = run_cli("run", path, "--run-id", "crash-1", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    requests = [r for r in sandbox.state()["received"] if r["family"] == "audience_import"]
    sent_per_digest = Counter(batch_digest(r["identifiers"]) for r in requests)
    assert all(sent_per_digest[digest] == 1 for digest in before)  # never re-sent once in the ledger
    assert sum(n - 1 for n in sent_per_digest.values()) <= CONCURRENCY  # only what was in flight
    delivered = {h for r in requests for h in r["identifiers"]}
    assert len(delivered) == 180  # everything arrived


@pytest.mark.parametrize("kill_at", ["after_answer:30", "after_ledger:30", "external"])
def test_unsubscribe_run_killed_and_resumed(tmp_path, sandbox, sandbox_env, kill_at) -> None:
    job = unsubscribe_job(tmp_path, UNSUBSCRIBES, limits={"requests_per_second": 50, "concurrency": CONCURRENCY})
    path = str(write_job(tmp_path, job))
    assert _run_and_kill(path, "crash-2", sandbox_env, kill_at, sandbox) == -signal.SIGKILL
    before = {line["subject"] for line in accepted_before(tmp_path)}
    assert before  # the kill came mid-run

    resumed = run_cli("run", path, "--run-id", "crash-2", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    import hashlib

    counts = Counter(r["identifiers"][0] for r in sandbox.state()["received"])
    assert set(counts) == valid_normalised_emails(UNSUBSCRIBES)
    for email, n in counts.items():
        if hashlib.sha256(email.encode()).hexdigest() in before:
            assert n == 1, "a subject the ledger showed accepted was sent again"
    assert sum(n - 1 for n in counts.values()) <= CONCURRENCY
    # Unsubscribing is not idempotent: each request's sending was recorded first, so every one sent again is
    # flagged, never silent.
    final = {line["subject"]: line for line in read_manifest(tmp_path / "out") if line.get("status") == "accepted"}
    for email, n in counts.items():
        if n > 1:
            line = final[hashlib.sha256(email.encode()).hexdigest()]
            assert line["ambiguous"] and "earlier_attempt_unrecorded" in line, line


def test_account_deletion_killed_between_an_answer_and_its_record_deletes_each_account_once(tmp_path, sandbox,
                                                                                           sandbox_env) -> None:
    """The Idempotency-Key of each account is the same in the resumed run, so a request whose answer died with the
    process is replayed by the API, never a second deletion."""
    source = tmp_path / "accounts.csv"
    accounts = [str(5000 + i) for i in range(6)]
    source.write_text("account\n" + "\n".join(accounts) + "\n")
    job = partnership_job(tmp_path, source, {"account_id": "account"}, endpoint="account_deletion", max_accounts=10)
    path = str(write_job(tmp_path, job))
    assert _run_and_kill(path, "offboard", sandbox_env, "after_answer:3", sandbox) == -signal.SIGKILL
    assert len(sandbox.state()["partnerships"]["deletions"]) >= 3  # the kill came after the third answer

    resumed = run_cli("run", path, "--run-id", "offboard", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    deleted = Counter(d["accountId"] for d in sandbox.state()["partnerships"]["deletions"])
    assert deleted == Counter(accounts)  # every account, each once


def _run_and_kill(path: str, run_id: str, env: dict, kill_at: str, sandbox) -> int:
    if kill_at != "external":
        return run_cli("run", path, "--run-id", run_id, env={**env, "ROKT_PIPELINE_KILL_AT": kill_at}).returncode
    command = [sys.executable, "-m", "pipeline", "run", path, "--run-id", run_id]
    sandbox.faults({"latency_seconds": 0.05})
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(sandbox.state()["received"]) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    code = process.wait(timeout=10)
    sandbox.faults({"latency_seconds": 0})
    return code


def test_torn_last_line_is_ignored_and_reported(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS, limits={"batch_size": 50})
    path = str(write_job(tmp_path, job))
    assert run_cli("run", path, "--run-id", "torn", env=sandbox_env, ).returncode == 0
    manifest = next((tmp_path / "out").glob("*/torn/manifest.jsonl"))
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # the last write torn
    resumed = run_cli("run", path, "--run-id", "torn", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "ignored 1 unreadable line" in resumed.stderr
    summary = json.loads(next((tmp_path / "out").glob("*/torn/summary.json")).read_text())
    assert summary["manifest_torn_lines"] == 1
    assert summary["batches_by_status"] == {"accepted": 1, "already_accepted": 3}  # the torn batch was sent again
    status = run_cli("status", "--config", path, "--run-id", "torn", env=sandbox_env)
    assert "4 planned; 4 accepted, 0 pending" in status.stdout and "1 torn manifest line" in status.stdout


def test_status_of_a_crashed_run(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, CUSTOMERS, limits={"batch_size": 10, "concurrency": 1})
    path = str(write_job(tmp_path, job))
    assert _run_and_kill(path, "st", sandbox_env, "after_ledger:3", sandbox) == -signal.SIGKILL
    report = json.loads(run_cli("status", "--config", path, "--run-id", "st", "--json", env=sandbox_env).stdout)
    # Preparation runs just ahead of sending (memory stays flat), so a run killed early may not know its total yet.
    assert (report["accepted"], report["finished"]) == (3, False)
    assert (report["batches_planned"], report["pending"]) in ((None, None), (18, 15))
    text = run_cli("status", "--config", path, "--run-id", "st", env=sandbox_env).stdout
    assert "did not finish (resume it with the same --run-id)" in text

    assert run_cli("run", path, "--run-id", "st", env=sandbox_env).returncode == 0
    assert json.loads(run_cli("status", "--config", path, "--run-id", "st", "--json", env=sandbox_env).stdout)["finished"]
    # A resume killed part way (the job now names another list: everything goes out again): the summary the
    # finished attempt left says nothing about it.
    assert path == str(write_job(tmp_path, {**job, "destination": {**job["destination"], "list": "Other_List"}}))
    assert _run_and_kill(path, "st", sandbox_env, "after_ledger:1", sandbox) == -signal.SIGKILL
    assert not json.loads(run_cli("status", "--config", path, "--run-id", "st", "--json", env=sandbox_env).stdout)["finished"]
    # A dry run would replace the real run's summary and plan: refused.
    dry = run_cli("run", path, "--run-id", "st", "--dry-run", env=sandbox_env)
    assert dry.returncode == 2 and "this run has sent requests" in dry.stderr
