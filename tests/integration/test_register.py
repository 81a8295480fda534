"""Exactly once per export, across runs: the delivery register, judged by the sandbox's own record.

A second run of the same export to the same destination under another run id sends nothing; --force sends it
again; a run that delivered part of it is resumed by the next, whatever that one's run id; and a job always says
where its data goes.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.conftest import (
    ROOT, audience_job, deletion_job, partnership_job, read_summary, received_identifiers, run_cli, unsubscribe_job,
    write_job,
)


def _people(tmp_path, count=12):
    path = tmp_path / "people.csv"
    pl.DataFrame({"email": [f"person{i}@example.com" for i in range(count)]}).write_csv(path)
    return path


def deletion(tmp_path, sandbox):
    sandbox.limits({"data_deletion": {"requests_per_second": 10, "concurrency": 1}})
    return deletion_job(tmp_path, _people(tmp_path), limits={"batch_size": 20}), "data_deletion"


def unsubscribe(tmp_path, sandbox):
    return unsubscribe_job(tmp_path, _people(tmp_path)), "nurture_unsubscribe"


def privacy(tmp_path, sandbox):
    job = partnership_job(tmp_path, _people(tmp_path), {"email": "email"}, endpoint="network_privacy",
                          request_type="NETWORK_DATA_DELETION")
    return job, "network_privacy"


def audience(tmp_path, sandbox):
    return audience_job(tmp_path, _people(tmp_path), columns={"email": "email"}), "audience_import"


def deliveries(sandbox, family: str) -> int:
    """Requests the API acted on: deletion tasks created, or requests received."""
    state = sandbox.state()
    if family == "data_deletion":
        return len(state["data_deletion"]["tasks"])
    return sum(1 for r in state["received"] if r["family"] == family)


@pytest.mark.parametrize("make_job", [deletion, unsubscribe, privacy, audience])
def test_the_same_export_goes_once_whatever_the_run_id_and_again_only_with_force(tmp_path, sandbox, sandbox_env,
                                                                                 make_job) -> None:
    job, family = make_job(tmp_path, sandbox)
    path = str(write_job(tmp_path, job))
    first = run_cli("run", path, "--run-id", "monday", env=sandbox_env)
    assert first.returncode == 0, first.stderr
    once = deliveries(sandbox, family)
    assert once >= 1

    again = run_cli("run", path, "--run-id", "manual-trigger", env=sandbox_env)
    assert again.returncode == 0, again.stderr
    assert "already delivered" in again.stdout and "by run monday" in again.stdout and "--force" in again.stdout
    assert deliveries(sandbox, family) == once  # nothing sent twice: for deletion, no second task
    summary = json.loads(next((tmp_path / "out").glob("*/manual-trigger/summary.json")).read_text())
    assert summary["already_delivered_by"]["run_id"] == "monday" and summary["requests"] == 0

    forced = run_cli("run", path, "--run-id", "on-purpose", "--force", env=sandbox_env)
    assert forced.returncode == 0, forced.stderr
    assert deliveries(sandbox, family) == 2 * once


def test_an_export_delivered_in_part_is_finished_by_resuming_that_run(tmp_path, sandbox, sandbox_env) -> None:
    """A run killed part way (a worker lost) and a new one with another run id (a manual trigger): the new one
    resumes the first one's ledger, so nothing it had sent goes twice, and everything arrives."""
    path = str(write_job(tmp_path, unsubscribe_job(tmp_path, _people(tmp_path, 40), limits={"concurrency": 1})))
    killed = run_cli("run", path, "--run-id", "lost-worker", env={**sandbox_env, "ROKT_PIPELINE_KILL_AT": "after_ledger:10"})
    assert killed.returncode == -9
    resumed = run_cli("run", path, "--run-id", "manual-trigger", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "partly delivered to this destination by run lost-worker" in resumed.stderr
    sent = received_identifiers(sandbox.state(), "nurture_unsubscribe")
    assert len(sent) == len(set(sent)) == 40  # all of it, nothing twice
    facts = json.loads(next((tmp_path / "out").glob("*/lost-worker/summary.json")).read_text())
    assert facts["batches_by_status"] == {"accepted": 30, "already_accepted": 10}


def test_another_destination_is_another_delivery(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, _people(tmp_path), columns={"email": "email"})
    assert run_cli("run", str(write_job(tmp_path, job)), "--run-id", "a", env=sandbox_env).returncode == 0
    job["destination"]["list"] = "Another_List"
    assert run_cli("run", str(write_job(tmp_path, job)), "--run-id", "b", env=sandbox_env).returncode == 0
    assert [r["list"] for r in sandbox.state()["received"]] == ["US_Customers", "Another_List"]


def test_a_job_without_base_url_is_refused_and_validate_names_the_destination(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, ROOT / "sample_data" / "customers.csv")
    del job["destination"]["base_url"]
    refused = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert refused.returncode == 2 and "destination.base_url: required" in refused.stderr
    assert "https://data.rokt.com for Rokt's" in refused.stderr and sandbox.state()["attempts"] == []

    job["destination"]["base_url"] = "${ROKT_SANDBOX_URL}"
    checked = run_cli("validate", str(write_job(tmp_path, job)), env=sandbox_env)
    assert checked.returncode == 0, checked.stderr
    assert (f"destination: audience_import at {sandbox.url} (not production): account 123456789, list US_Customers, "
            "action include") in checked.stdout
    as_json = run_cli("validate", str(write_job(tmp_path, job)), "--json", env=sandbox_env)
    assert json.loads(as_json.stdout)["destination"]["url"] == sandbox.url

    ran = run_cli("run", str(write_job(tmp_path, job)), "--dry-run", env=sandbox_env)
    assert f"dry run: would send to audience_import at {sandbox.url} (not production)" in ran.stderr
    assert read_summary(tmp_path / "out")["destination"] == {
        "endpoint": "audience_import", "url": sandbox.url, "production": False, "account_id": "123456789",
        "list": "US_Customers", "action": "include", "send": "sha256", "sync_mode": "full"}


def test_a_partnerships_job_pointed_away_from_rokt_needs_its_own_token_url(tmp_path, sandbox, sandbox_env) -> None:
    """A sandbox's client secret must never go to Rokt's token endpoint."""
    job = partnership_job(tmp_path, _people(tmp_path), {"email": "email"}, endpoint="network_privacy",
                          request_type="NETWORK_OPT_OUT")
    job["destination"]["credentials"] = {"client_id": "${ROKT_PARTNER_CLIENT_ID}", "client_secret": "${ROKT_PARTNER_CLIENT_SECRET}"}
    refused = run_cli("validate", str(write_job(tmp_path, job)), env=sandbox_env)
    assert refused.returncode == 2 and "auth_url: required with client_id and client_secret" in refused.stderr
