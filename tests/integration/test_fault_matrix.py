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
BATCH_FAMILIES = ("audience_import", "data_deletion")  # manifest lines and sandbox attempts name a batch by its digest


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
    job = partnership_job(tmp_path, path, {"account_id": "account"}, endpoint="account_deletion", operation_poll_seconds=2,
                          max_accounts=20)
    return job, "account_deletion", set(ids)


# The data deletion job above sends at 10/s, above the sandbox's default for it (the connector's own).
DELETION_LIMITS = {"data_deletion": {"requests_per_second": 10, "concurrency": 1}}


def received(state, family):
    if family == "data_deletion":
        return [e for task in state["data_deletion"]["tasks"] for e in task["rawEmails"]]
    if family == "account_deletion":
        return [d["accountId"] for d in state["partnerships"]["deletions"]]
    return [v for r in state["received"] if r["family"] == family for v in r["identifiers"]]


FAMILIES = [audience, deletion, unsubscribe, privacy, accounts]


def join_key(family: str) -> str:
    """What names one request in both the manifest and the sandbox's record of attempts."""
    return "digest" if family in BATCH_FAMILIES else "subject"


def writes(state, family):
    return [a for a in state["attempts"] if a["family"] == family and a["method"] == "POST"]


@pytest.mark.parametrize("make_job", FAMILIES)
def test_every_fault_for_every_family(tmp_path, sandbox, sandbox_env, make_job) -> None:
    job, family, expected = make_job(tmp_path)
    job["destination"]["timeout_seconds"] = 0.8
    # The whole script may hit one request. A timed-out request still holds its server slot until the server
    # finishes it, so the backoff (>= 0.25 s here) is longer than the slow answer overruns the timeout (0.2 s).
    job["destination"]["retry"].update(max_attempts=12, base_delay_seconds=0.5)
    sandbox.limits(DELETION_LIMITS)
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
    key = join_key(family)
    lost = {a[key] for a in writes(state, family) if a["fault"] in LOST_AFTER_ACTING}
    assert lost <= {line[key] for line in lines if line["ambiguous"]}  # every lost answer is flagged
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


# One fault per request: one request in flight, and the retry of each faulted request served normally, so every
# fault meets a request of its own and the flags can be checked both ways.
LOST_ANSWERS = [{"kind": "slow", "delay_seconds": 1.0}, {"kind": "reset_after"}]
# What the server says it did not act on. (A connection reset before the server acted looks the same to the client
# as one reset after: the request had left, so it is flagged too.)
NOT_ACTED_ON = [{"kind": "status", "status": 429}, {"kind": "status", "status": 429, "retry_after": "1"},
                {"kind": "status", "status": 503, "retry_after": "1"}]


@pytest.mark.parametrize("make_job", FAMILIES)
def test_every_lost_answer_is_flagged_ambiguous_and_nothing_else_is(tmp_path, sandbox, sandbox_env, make_job) -> None:
    """A request whose answer was lost after the server acted (slow past the timeout, reset after acting) is
    flagged on its manifest line; one the server says it did not act on (429, 503 with Retry-After) is not. Joined through the digest or subject the sandbox recorded for each attempt."""
    job, family, _ = make_job(tmp_path)
    destination = job["destination"]
    destination["timeout_seconds"] = 0.8
    # The slow answer holds its server slot 0.2 s past the client's timeout; the backoff (>= 0.5 s) outlasts it.
    destination["retry"].update(max_attempts=4, base_delay_seconds=1.0)
    destination["limits"] = {**destination.get("limits", {}), "concurrency": 1}
    script = [step for fault in LOST_ANSWERS + NOT_ACTED_ON for step in (fault, {"kind": "none"})]
    sandbox.limits(DELETION_LIMITS)
    sandbox.faults({"family": family, "method": "POST", "script": script})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    key = join_key(family)
    attempts = writes(sandbox.state(), family)
    lost = {a[key] for a in attempts if a["fault"] in LOST_AFTER_ACTING}
    not_acted_on = {a[key] for a in attempts if a["fault"] == "status"}
    assert len(lost) == len(LOST_ANSWERS) and len(not_acted_on) == len(NOT_ACTED_ON) and not lost & not_acted_on
    lines = [line for line in read_manifest(tmp_path / "out") if "batch" in line]
    assert {line[key] for line in lines if line["ambiguous"]} == lost


@pytest.mark.parametrize("make_job", [audience, unsubscribe, privacy])
def test_a_403_stops_the_run_at_its_first_answer(tmp_path, sandbox, sandbox_env, make_job) -> None:
    """403 (credentials not allowed) fails every other request too: the run stops instead of burning the file."""
    job, family, expected = make_job(tmp_path)
    job["destination"]["limits"] = {**job["destination"].get("limits", {}), "concurrency": 1}
    sandbox.faults({"family": family, "script": [{"kind": "status", "status": 403}]})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 1, done.stderr
    assert len(writes(sandbox.state(), family)) == 1
    requests = len(expected) // (4 if family == "audience_import" else 1)
    assert read_summary(tmp_path / "out")["batches_by_status"] == {"rejected": 1, "not_sent": requests - 1}
