"""Every endpoint family through every fault the sandbox injects, judged by the sandbox's own record:
everything delivered, duplicates only where an answer was lost after the server acted, each flagged."""

from __future__ import annotations

import hashlib
from collections import Counter

import polars as pl
import pytest

from tests.conftest import (
    ROOT, audience_job, deletion_job, partnership_job, read_manifest, read_summary, run_cli, unsubscribe_job, write_job,
)

FAULTS = [
    {"kind": "status", "status": 429, "retry_after": "1"},
    {"kind": "status", "status": 429, "retry_after": "date"},
    {"kind": "status", "status": 429},
    {"kind": "status", "status": 503, "retry_after": "1"},
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 500},
    {"kind": "slow", "delay_seconds": 1.0},
    {"kind": "reset_before"},
    {"kind": "reset_after"},
    {"kind": "malformed"},
]
LOST_AFTER_ACTING = ("slow", "reset_after")  # the server acted, the answer was lost (slow: past the client timeout)


def _emails(tmp_path, n=24):
    path = tmp_path / "people.csv"
    pl.DataFrame({"email": [f"Person{i}@Example.com " for i in range(n)]}).write_csv(path)
    return path, {f"person{i}@example.com" for i in range(n)}


def audience(tmp_path):
    path, emails = _emails(tmp_path)
    job = audience_job(tmp_path, path, columns={"email": "email"}, send="email", limits={"batch_size": 4})
    return job, "audience_import", emails


def deletion(tmp_path):
    path, emails = _emails(tmp_path)
    return deletion_job(tmp_path, path, send="email", limits={"batch_size": 4, "requests_per_second": 10}), "data_deletion", emails


def unsubscribe(tmp_path):
    path, emails = _emails(tmp_path)
    return unsubscribe_job(tmp_path, path), "nurture_unsubscribe", emails


def privacy(tmp_path):
    path, emails = _emails(tmp_path)
    job = partnership_job(tmp_path, path, {"email": "email"}, endpoint="network_privacy", request_type="NETWORK_OPT_OUT")
    return job, "network_privacy", emails


def accounts(tmp_path):
    path = tmp_path / "accounts.csv"
    ids = [str(7000 + i) for i in range(12)]
    pl.DataFrame({"account": ids}).write_csv(path)
    job = partnership_job(tmp_path, path, {"account_id": "account"}, endpoint="account_deletion", operation_poll_seconds=2, max_accounts=20)
    return job, "account_deletion", set(ids)


def received(state, family):
    if family == "data_deletion":
        return [e for task in state["data_deletion"]["tasks"] for e in task["rawEmails"]]
    if family == "account_deletion":
        return [d["accountId"] for d in state["partnerships"]["deletions"]]
    return [v for r in state["received"] if r["family"] == family for v in r["identifiers"]]


@pytest.mark.parametrize("make_job", [audience, deletion, unsubscribe, privacy, accounts])
def test_every_fault_for_every_family(tmp_path, sandbox, sandbox_env, make_job) -> None:
    job, family, expected = make_job(tmp_path)
    job["destination"]["timeout_seconds"] = 0.8
    # The whole script may hit one request. A timed-out request still holds its server slot until the server
    # finishes it, so the backoff (>= 0.25 s here) is longer than the slow answer overruns the timeout (0.2 s).
    job["destination"]["retry"].update(max_attempts=12, base_delay_seconds=0.5)
    sandbox.limits({"data_deletion": {"requests_per_second": 10, "concurrency": 1}})
    sandbox.faults({"family": family, "script": FAULTS})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    counts = Counter(received(state, family))
    assert set(counts) == expected  # nothing lost
    lost_writes = sum(1 for a in state["attempts"] if a["method"] == "POST" and a["fault"] in LOST_AFTER_ACTING)
    extra = sum(n - 1 for n in counts.values())
    if family == "account_deletion":
        assert extra == 0  # the Idempotency-Key turns a lost answer into a replay, not a second deletion
    else:
        per_request = 4 if family in ("audience_import", "data_deletion") else 1  # identifiers per request
        assert extra <= lost_writes * per_request  # duplicates only where an answer was lost after acting
    lines = [line for line in read_manifest(tmp_path / "out") if "batch" in line]
    assert all(line["status"] == "accepted" for line in lines)
    assert sum(1 for line in lines if line["ambiguous"]) >= min(lost_writes, 1)  # every lost answer is flagged
    if family in ("nurture_unsubscribe", "network_privacy"):
        flagged = {line["subject"] for line in lines if line["ambiguous"]}
        assert {hashlib.sha256(e.encode()).hexdigest() for e, n in counts.items() if n > 1} <= flagged
    faults_seen = sum(1 for a in state["attempts"] if a["fault"] not in (None, "malformed"))
    assert faults_seen == len(FAULTS) - 1  # the whole script ran; malformed is an answer, not a retry
    assert state["violations"] == []  # retries stayed within the limits


def test_a_hopeless_run_ends_on_its_retry_budget(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"rates": [{"rate": 1.0, "status": 503}]})
    job = audience_job(tmp_path, ROOT / "sample_data" / "customers.csv", limits={"batch_size": 20, "concurrency": 2},
                       retry={"max_attempts": 20, "base_delay_seconds": 0.2, "max_delay_seconds": 1, "max_total_retry_seconds": 2})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env, timeout=60)
    assert done.returncode == 1
    facts = read_summary(tmp_path / "out")
    assert "retry budget spent" in facts["stopped_reason"]
    assert facts["identifiers_left"] == 180 and facts["batches_by_status"].get("not_sent", 0) >= 1
    assert facts["elapsed_seconds"] < 20
    assert {line["status"] for line in read_manifest(tmp_path / "out")} == {"failed"}
