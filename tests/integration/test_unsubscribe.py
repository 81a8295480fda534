"""Nurture Unsubscribe end to end: one email per request, fan-out within limits, exactly once, ambiguity flagged."""

from __future__ import annotations

import hashlib
from collections import Counter

from tests.conftest import ROOT, read_manifest, read_summary, received_identifiers, run_cli, unsubscribe_job, valid_normalised_emails, write_job

SOURCE = ROOT / "sample_data" / "unsubscribes.csv"


def subject(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def test_messy_file_delivered_once_one_email_per_request(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"latency_seconds": 0.1})  # slower than the 21 ms between starts at 50/s: several in flight
    done = run_cli("run", str(write_job(tmp_path, unsubscribe_job(tmp_path, SOURCE))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    sent = received_identifiers(state, "nurture_unsubscribe")
    expected = valid_normalised_emails(SOURCE)
    assert sorted(sent) == sorted(expected) and len(expected) == 120
    assert state["families"]["nurture_unsubscribe"]["max_in_flight"] >= 4  # fanned out, not sequential
    assert state["violations"] == []
    lines = read_manifest(tmp_path / "out")
    ids_by_subject = {line["subject"]: line["ids"]["id"] for line in lines}
    assert ids_by_subject == {subject(r["identifiers"][0]): r["id"] for r in state["received"]}
    written = "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert not any(email in written for email in expected)
    assert read_summary(tmp_path / "out")["batches_by_status"] == {"accepted": 120}


def test_faults_duplicate_only_lost_answers_and_flag_them(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"family": "nurture_unsubscribe", "script": [
        {"kind": "status", "status": 429, "retry_after": "1"},
        {"kind": "status", "status": 503, "retry_after": "1"},
        {"kind": "reset_before"},
        {"kind": "reset_after"},
        {"kind": "slow", "delay_seconds": 1.2},
        {"kind": "status", "status": 503},
    ]})
    job = unsubscribe_job(tmp_path, SOURCE, timeout_seconds=0.6, limits={"concurrency": 4, "requests_per_second": 50})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    counts = Counter(received_identifiers(sandbox.state(), "nurture_unsubscribe"))
    assert set(counts) == valid_normalised_emails(SOURCE)  # nothing lost
    duplicated = {subject(email) for email, n in counts.items() if n > 1}
    lines = read_manifest(tmp_path / "out")
    flagged = {line["subject"] for line in lines if line["ambiguous"]}
    # reset_after and slow: the server acted and the answer was lost, so exactly two extra deliveries (one
    # subject may absorb both when its retry meets the next scripted fault)
    assert sum(n - 1 for n in counts.values()) == 2 and duplicated
    assert duplicated <= flagged  # every duplicate is flagged in the manifest
    assert all(line["status"] == "accepted" for line in lines)


def test_resume_never_resends_an_accepted_subject(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"family": "nurture_unsubscribe", "script": [{"kind": "none"}] * 10 + [{"kind": "status", "status": 400}] * 3})
    path = write_job(tmp_path, unsubscribe_job(tmp_path, SOURCE))
    first = run_cli("run", str(path), "--run-id", "u-1", env=sandbox_env)
    assert first.returncode == 1
    assert read_summary(tmp_path / "out")["batches_by_status"] == {"accepted": 117, "rejected": 3}
    second = run_cli("run", str(path), "--run-id", "u-1", env=sandbox_env)
    assert second.returncode == 0, second.stderr
    counts = Counter(received_identifiers(sandbox.state(), "nurture_unsubscribe"))
    assert set(counts) == valid_normalised_emails(SOURCE) and set(counts.values()) == {1}
    assert read_summary(tmp_path / "out")["batches_by_status"] == {"accepted": 3, "already_accepted": 117}
