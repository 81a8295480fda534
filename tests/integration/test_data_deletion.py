"""Data Deletion API end to end against the sandbox: base64 digests, task IDs, OAuth, lifecycle commands."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from pipeline.config import load_job
from pipeline.deletions import open_runs, sync_run
from pipeline.endpoints.data_deletion import DataDeletion, created_task_ids
from pipeline.http.client import sender_for
from tests.conftest import ROOT, deletion_job, read_manifest, read_summary, run_cli, valid_normalised_emails, write_job

SOURCE = ROOT / "sample_data" / "deletion_requests.csv"


def b64(email: str) -> str:
    return base64.b64encode(hashlib.sha256(email.encode()).digest()).decode()


@pytest.fixture()
def fast_deletions(sandbox):
    sandbox.limits({"data_deletion": {"requests_per_second": 10, "concurrency": 1}})
    return sandbox


@pytest.mark.parametrize("create_returns_body", [False, True], ids=["documented-empty-202", "202-with-body"])
def test_delivered_once_as_base64_with_task_ids(tmp_path, fast_deletions, sandbox_env, create_returns_body) -> None:
    sandbox = fast_deletions
    sandbox.configure({"data_deletion": {"create_returns_body": create_returns_body}})
    done = run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    sent = [h for task in state["data_deletion"]["tasks"] for h in task["sha256Emails"]]
    assert sorted(sent) == sorted(b64(e) for e in valid_normalised_emails(SOURCE))
    assert b64("hello@example.com") == "F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgY="
    lines = read_manifest(tmp_path / "out")
    sandbox_task_ids = sorted(t["taskId"] for t in state["data_deletion"]["tasks"])
    assert sorted(line["ids"]["taskId"] for line in lines) == sandbox_task_ids
    assert {line["task_id_source"] for line in lines} == {"response" if create_returns_body else "list_diff"}
    assert state["data_deletion"]["token_requests"] == 1  # one token for the whole run, not one per request
    assert state["violations"] == []


def test_raw_emails_when_asked(tmp_path, fast_deletions, sandbox_env) -> None:
    done = run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE, send="email"))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    tasks = fast_deletions.state()["data_deletion"]["tasks"]
    assert sorted(e for t in tasks for e in t["rawEmails"]) == sorted(valid_normalised_emails(SOURCE))
    assert all(t["sha256Emails"] == [] for t in tasks)


def test_unauthorised_account_stops_with_advice(tmp_path, fast_deletions, sandbox_env) -> None:
    fast_deletions.configure({"data_deletion": {"allowed_accounts": ["someone-else"]}})
    done = run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE))), env=sandbox_env)
    assert done.returncode == 1
    facts = read_summary(tmp_path / "out")
    assert "UNAUTHORIZED_ACCOUNT" in facts["stopped_reason"] and "account manager" in facts["stopped_reason"]
    assert facts["batches_by_status"] == {"not_sent": 2, "rejected": 1}


def test_wrong_app_secret_is_a_clear_terminal_error(tmp_path, fast_deletions, sandbox_env) -> None:
    env = {**sandbox_env, "ROKT_APP_SECRET": "wrong-secret"}
    done = run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE))), env=env)
    assert done.returncode == 1
    assert "check destination.credentials app_id and app_secret" in read_summary(tmp_path / "out")["stopped_reason"]
    assert "wrong-secret" not in done.stdout + done.stderr
    assert fast_deletions.state()["data_deletion"]["tasks"] == []


def test_500_is_retried(tmp_path, fast_deletions, sandbox_env) -> None:
    fast_deletions.faults({"family": "data_deletion", "script": [{"kind": "none"}, {"kind": "status", "status": 500}]})
    done = run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE))), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert len(fast_deletions.state()["data_deletion"]["tasks"]) == 3
    assert read_summary(tmp_path / "out")["retries"] == 1


def test_expired_token_is_refreshed_once(tmp_path, fast_deletions, sandbox_env) -> None:
    job = load_job(write_job(tmp_path, deletion_job(tmp_path, SOURCE)))
    endpoint = DataDeletion(job.destination, "email")
    sender = sender_for(job, endpoint)
    assert endpoint.list_tasks(sender.fetch) == []
    fast_deletions.configure({"data_deletion": {"expire_tokens": True}})  # the cached token is now refused
    assert endpoint.list_tasks(sender.fetch) == []
    assert fast_deletions.state()["data_deletion"]["token_requests"] == 2


def test_list_cancel_and_sync_across_the_lifecycle(tmp_path, fast_deletions, sandbox_env) -> None:
    sandbox = fast_deletions
    path = write_job(tmp_path, deletion_job(tmp_path, SOURCE, limits={"batch_size": 20, "requests_per_second": 10}))
    assert run_cli("run", str(path), "--run-id", "dsr-1", env=sandbox_env).returncode == 0
    first, second = [line["ids"]["taskId"] for line in sorted(read_manifest(tmp_path / "out"), key=lambda l: l["batch"])]

    listed = run_cli("deletions", "list", "--config", str(path), "--json", env=sandbox_env)
    rows = {row["taskId"]: row for row in json.loads(listed.stdout)}
    assert rows[first]["status"] == "PENDING" and 11.9 <= rows[first]["days_to_ready"] <= 12

    cancelled = run_cli("deletions", "cancel", "--config", str(path), first, env=sandbox_env)
    assert cancelled.returncode == 0 and f"{first}: cancelled" in cancelled.stdout
    sandbox.advance_days(13)
    table = run_cli("deletions", "list", "--config", str(path), "--status", "ready", env=sandbox_env).stdout
    assert second in table and first not in table and "1 task\n" in table

    sandbox.advance_days(3)  # past READY: no longer cancellable
    mixed = run_cli("deletions", "cancel", "--config", str(path), second, "no-such-task", env=sandbox_env)
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr
    assert f"{second}: not cancelled (HTTP 410)" in mixed.stdout and "DEADLINE_EXCEEDED" in mixed.stdout
    assert "no-such-task: not cancelled (HTTP 404)" in mixed.stdout

    synced = run_cli("deletions", "sync", "--config", str(path), "--run-id", "dsr-1", env=sandbox_env)
    assert "1 cancelled, 1 processing; 1 still open" in synced.stdout
    sandbox.advance_days(15)
    result = sync_run(load_job(path), "dsr-1")
    assert result["by_status"] == {"CANCELLED": 1, "ACTIONED": 1} and result["open"] == 0
    states = [line for line in read_manifest(tmp_path / "out") if line.get("record") == "task_state"]
    assert [(s["taskId"], s["task_status"]) for s in states[-2:]] == [(first, "CANCELLED"), (second, "ACTIONED")]
    # the state lines never make a resumed run think a batch was accepted twice
    again = run_cli("run", str(path), "--run-id", "dsr-1", env=sandbox_env)
    assert again.returncode == 0 and len(sandbox.state()["data_deletion"]["tasks"]) == 2


def test_the_two_encodings_never_cross_endpoints(tmp_path, fast_deletions, sandbox_env) -> None:
    from tests.conftest import audience_job, received_identifiers

    audience = audience_job(tmp_path, SOURCE, columns={"email": "email"})
    audience["source"]["max_reject_fraction"] = 0.2
    assert run_cli("run", str(write_job(tmp_path, audience, "a.yaml")), env=sandbox_env).returncode == 0
    assert run_cli("run", str(write_job(tmp_path, deletion_job(tmp_path, SOURCE), "d.yaml")), env=sandbox_env).returncode == 0
    state = fast_deletions.state()
    hexes = received_identifiers(state, "audience_import")
    base64s = [h for task in state["data_deletion"]["tasks"] for h in task["sha256Emails"]]
    assert all(len(h) == 64 and h == h.lower() for h in hexes)
    assert all(len(b) == 44 and b.endswith("=") for b in base64s)
    assert sorted(base64.b64encode(bytes.fromhex(h)).decode() for h in hexes) == sorted(base64s)


def test_sync_of_an_unknown_run_leaves_nothing_behind(tmp_path, sandbox_env, monkeypatch) -> None:
    from pipeline.errors import ConfigError

    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    job = load_job(write_job(tmp_path, deletion_job(tmp_path, SOURCE)))
    with pytest.raises(ConfigError, match="no manifest for run 'typo'"):
        sync_run(job, "typo")
    assert not list((tmp_path / "out").rglob("typo"))


def test_the_tasks_of_a_request_retried_after_a_lost_answer_are_all_followed_up(tmp_path, fast_deletions, sandbox_env) -> None:
    """The server created a task, the answer was lost, the retry created another: the list cannot tell which is
    whose, so the manifest names both as candidates, and `deletions sync` follows both to their end."""
    sandbox = fast_deletions
    sandbox.configure({"data_deletion": {"create_returns_body": False}})
    # The run first lists the account's tasks (served normally); its first create is acted on, then cut off.
    sandbox.faults({"family": "data_deletion", "script": [{"kind": "none"}, {"kind": "reset_after"}]})
    path = write_job(tmp_path, deletion_job(tmp_path, SOURCE, limits={"batch_size": 20, "requests_per_second": 10}))
    assert run_cli("run", str(path), "--run-id", "dsr-2", env=sandbox_env).returncode == 0
    first = min(read_manifest(tmp_path / "out"), key=lambda line: line["batch"])
    assert first["ambiguous"] and first["task_id_source"] == "list_diff_ambiguous"
    assert len(first["ids"]["taskId_candidates"]) == 2
    job = load_job(path)
    assert open_runs(job) == ["dsr-2"]
    assert sync_run(job, "dsr-2")["tasks"] == 3  # both candidates and the second batch's task
    sandbox.advance_days(30)
    assert sync_run(job, "dsr-2")["by_status"] == {"ACTIONED": 3}
    assert open_runs(job) == []


def test_a_task_created_just_before_a_crash_is_found_and_its_batch_flagged(tmp_path, fast_deletions, sandbox_env) -> None:
    """Killed between the API's answer and the manifest line: the resume sends that batch again (a second task),
    flags it, and names the first task as a candidate, so the audit trail and `deletions sync` cover both."""
    sandbox = fast_deletions
    sandbox.configure({"data_deletion": {"create_returns_body": False}})
    path = write_job(tmp_path, deletion_job(tmp_path, SOURCE, limits={"batch_size": 10, "requests_per_second": 10}))
    killed = run_cli("run", str(path), "--run-id", "dsr-3", env={**sandbox_env, "ROKT_PIPELINE_KILL_AT": "after_answer:2"})
    assert killed.returncode < 0
    dry = run_cli("run", str(path), "--run-id", "dsr-3", "--dry-run", env=sandbox_env)
    assert dry.returncode == 2 and "this run has sent requests" in dry.stderr  # it would hide the lost answer
    resumed = run_cli("run", str(path), "--run-id", "dsr-3", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "their answers never recorded" in resumed.stderr
    tasks = sandbox.state()["data_deletion"]["tasks"]
    assert len(tasks) == 4  # the second batch's request reached the API twice
    lines = read_manifest(tmp_path / "out")
    [resent] = [line for line in lines if line.get("status") == "accepted" and line["batch"] == 1]
    assert resent["ambiguous"] and "earlier_attempt_unrecorded" in resent
    job = load_job(path)
    assert sorted(created_task_ids(lines)) == sorted(t["taskId"] for t in tasks)
    assert sync_run(job, "dsr-3")["tasks"] == 4


def test_the_sync_of_several_open_runs_takes_one_token_and_one_listing(tmp_path, sandbox, sandbox_env) -> None:
    """Three open runs, one sync right after them: one token and one listing for all of them, within the limit
    (the connector's default of one request a second, which the sandbox enforces)."""
    for day in range(3):
        source = tmp_path / f"requests-{day}.csv"
        source.write_text("email\n" + "\n".join(f"day{day}-person{i}@example.com" for i in range(5)) + "\n")
        job = deletion_job(tmp_path, source, limits={"batch_size": 10, "requests_per_second": 1})
        assert run_cli("run", str(write_job(tmp_path, job, f"day-{day}.yaml")), "--run-id", f"day-{day}",
                       env=sandbox_env).returncode == 0
    before = sandbox.state()
    listed_before = sum(1 for a in before["attempts"] if a["method"] == "GET")
    done = run_cli("deletions", "sync", "--config", str(tmp_path / "day-0.yaml"), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["run day-0", "run day-1", "run day-2"]
    after = sandbox.state()
    assert after["data_deletion"]["token_requests"] - before["data_deletion"]["token_requests"] == 1
    assert sum(1 for a in after["attempts"] if a["method"] == "GET") - listed_before == 1
    assert after["violations"] == before["violations"]  # the sync broke no limit (it counts the runs' last requests)
