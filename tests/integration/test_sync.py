"""incremental and mirror sync through the real CLI against the sandbox over HTTP, state on disk and on S3 (moto).

What the sandbox received is the evidence: a second run with the same file sends nothing, added and removed
identifiers go out as include and exclude, failed batches go out again next run, refused ones do not, the
safety limit holds, and a rollback makes the next run send again what the rolled-back runs had sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.batching import batch_digest
from tests.conftest import ROOT, audience_job, partnership_job, run_cli, unsubscribe_job, write_job


def emails(numbers: range | list[int]) -> list[str]:
    return [f" Person{i}@Example.com" for i in numbers]  # messy on purpose: case and a leading space


def hexes(numbers: range | list[int]) -> set[str]:
    return {hashlib.sha256(f"person{i}@example.com".encode()).hexdigest() for i in numbers}


def write_source(path: Path, numbers: range | list[int]) -> Path:
    pl.DataFrame({"email": emails(numbers)}, schema={"email": pl.String}).write_csv(path)
    return path


def sync_job(tmp_path: Path, mode: str, **destination: Any) -> dict[str, Any]:
    settings = {"limits": {"batch_size": 10, "concurrency": 1}, "sync_mode": mode, **destination}
    return audience_job(tmp_path, tmp_path / "export.csv", columns={"email": "email"}, **settings)


class Runner:
    """Runs one job file with the real CLI, each run under a run id of its own."""

    def __init__(self, tmp_path: Path, job: dict[str, Any], env: dict[str, str]):
        self.tmp_path, self.env = tmp_path, env
        self.path = write_job(tmp_path, job)
        self.out = tmp_path / "out" / job["job"]

    def run(self, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli("run", str(self.path), "--run-id", run_id, *extra, env=self.env)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.path), env=self.env)

    def summary(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.out / run_id / "summary.json").read_text())

    def manifest(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / run_id / "manifest.jsonl").read_text().splitlines()]

    def state(self) -> dict[str, Any]:
        shown = self.cli("state", "show", "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def state_identifiers(self, version: str | None = None) -> dict[str, bool]:
        """hashed identifier -> rejected, from the state version's Parquet file (the current one by default)."""
        shown = self.state()
        frame = pl.read_parquet(Path(shown["state"]) / f"{version or shown['current']}.parquet")
        return dict(zip(frame["hashed_identifier"].to_list(), frame["rejected"].to_list()))


def requests_by_action(sandbox) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"include": [], "exclude": []}
    for request in sandbox.state()["received"]:
        out[request["action"]] += request["identifiers"]
    return out


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.mark.parametrize("mode", ["incremental", "mirror"])
def test_a_second_run_with_an_unchanged_file_sends_nothing(tmp_path, sandbox, sandbox_env, mode) -> None:
    write_source(tmp_path / "export.csv", range(35))
    runner = Runner(tmp_path, sync_job(tmp_path, mode), sandbox_env)
    first = runner.run("day-1")
    assert first.returncode == 0, first.stderr
    assert sorted(requests_by_action(sandbox)["include"]) == sorted(hexes(range(35)))
    assert runner.state_identifiers() == dict.fromkeys(hexes(range(35)), False)

    sandbox.reset()
    second = runner.run("day-2")
    assert second.returncode == 0, second.stderr
    assert sandbox.state()["attempts"] == []
    sync = runner.summary("day-2")["sync"]
    assert (sync["in_file"], sync["unchanged"], sync["new"], sync["requests"], sync["base_version"]) == (35, 35, 0, 0, "day-1")
    assert "0 new to send" in second.stdout or "0 to include, 0 to exclude" in second.stdout
    assert runner.state()["current"] == "day-1"  # nothing changed, so no new version


def test_added_and_removed_identifiers_go_out_as_include_and_exclude(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror"), sandbox_env)
    write_source(source, range(100))
    assert runner.run("day-1").returncode == 0

    sandbox.reset()
    write_source(source, [*range(12, 100), *range(100, 125)])  # 12 left the list, 25 joined it
    done = runner.run("day-2")
    assert done.returncode == 0, done.stderr
    sent = requests_by_action(sandbox)
    assert sorted(sent["include"]) == sorted(hexes(range(100, 125)))
    assert sorted(sent["exclude"]) == sorted(hexes(range(12)))
    assert all(r["list"] == "US_Customers" and r["account_id"] == "123456789" for r in sandbox.state()["received"])

    lines = runner.manifest("day-2")
    assert sorted((line["batch"], line["action"], line["records"]) for line in lines) == [
        (0, "include", 10), (1, "include", 10), (2, "include", 5), (3, "exclude", 10), (4, "exclude", 2)]
    sync = runner.summary("day-2")["sync"]
    assert (sync["new"], sync["left"], sync["unchanged"], sync["list_size"]) == (25, 12, 88, 100)
    assert (sync["accepted_new"], sync["accepted_left"], sync["identifiers_in_state"]) == (25, 12, 113)
    assert "25 to include, 12 to exclude (12.0% of the 100 in the list)" in done.stdout
    assert set(runner.state_identifiers()) == hexes(range(12, 125))


def test_incremental_sends_only_new_identifiers_with_the_jobs_action(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "incremental", action="exclude"), sandbox_env)
    write_source(source, range(30))
    assert runner.run("day-1").returncode == 0
    sandbox.reset()
    write_source(source, range(10, 45))  # 10 gone (incremental never removes), 15 new
    assert runner.run("day-2").returncode == 0
    sent = requests_by_action(sandbox)
    assert sent["include"] == [] and sorted(sent["exclude"]) == sorted(hexes(range(30, 45)))
    assert set(runner.state_identifiers()) == hexes(range(45))


def test_a_failed_batch_is_sent_again_by_the_next_run(tmp_path, sandbox, sandbox_env) -> None:
    write_source(tmp_path / "export.csv", range(50))
    runner = Runner(tmp_path, sync_job(tmp_path, "incremental", retry={"max_attempts": 2, "base_delay_seconds": 0.01}), sandbox_env)
    sandbox.faults({"script": [{"kind": "none"}, {"kind": "none"}, {"kind": "status", "status": 500}, {"kind": "status", "status": 500}]})
    first = runner.run("day-1")
    assert first.returncode == 1
    failed = [line for line in runner.manifest("day-1") if line["status"] == "failed"]
    assert [line["batch"] for line in failed] == [2]
    accepted = set(requests_by_action(sandbox)["include"])
    missing = hexes(range(50)) - accepted
    assert len(missing) == 10 and set(runner.state_identifiers()) == accepted
    assert runner.summary("day-1")["sync"]["not_settled"] == 10

    sandbox.reset()
    second = runner.run("day-2")  # a new run, not a resume: the state alone says what is left
    assert second.returncode == 0, second.stderr
    assert sorted(requests_by_action(sandbox)["include"]) == sorted(missing)
    sandbox.reset()
    assert runner.run("day-3").returncode == 0 and sandbox.state()["attempts"] == []


def test_a_failed_exclude_is_sent_again_by_the_next_run(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror", retry={"max_attempts": 1}), sandbox_env)
    write_source(source, range(100))
    assert runner.run("day-1").returncode == 0
    write_source(source, range(10, 100))
    sandbox.reset()
    sandbox.faults({"script": [{"kind": "status", "status": 503}]})
    assert runner.run("day-2").returncode == 1
    assert set(runner.state_identifiers()) == hexes(range(100))  # still in the list, as far as anyone knows
    sandbox.reset()
    assert runner.run("day-3").returncode == 0
    assert sorted(requests_by_action(sandbox)["exclude"]) == sorted(hexes(range(10)))
    assert set(runner.state_identifiers()) == hexes(range(10, 100))


def test_refused_identifiers_are_recorded_counted_and_not_sent_again(tmp_path, sandbox, sandbox_env) -> None:
    write_source(tmp_path / "export.csv", range(40))
    runner = Runner(tmp_path, sync_job(tmp_path, "incremental"), sandbox_env)
    sandbox.faults({"script": [{"kind": "none"}, {"kind": "status", "status": 400}]})
    assert runner.run("day-1").returncode == 1
    [refused] = [line for line in runner.manifest("day-1") if line["status"] == "rejected"]
    state = runner.state_identifiers()
    assert sum(state.values()) == 10 and len(state) == 40  # 30 accepted, 10 recorded as rejected
    assert runner.summary("day-1")["sync"]["rejected"] == 10

    sandbox.reset()
    done = runner.run("day-2")
    assert done.returncode == 0, done.stderr
    assert sandbox.state()["attempts"] == []
    sync = runner.summary("day-2")["sync"]
    assert (sync["skipped_rejected"], sync["new"], sync["unchanged"]) == (10, 0, 30)
    assert "10 skipped (rejected by an earlier run)" in done.stdout
    assert refused["digest"] and refused["http_status"] == 400


def test_mirror_refuses_to_exclude_more_than_the_limit_without_yes(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror"), sandbox_env)
    write_source(source, range(100))
    assert runner.run("day-1").returncode == 0
    sandbox.reset()

    write_source(source, range(70))  # a truncated export: 30% of the list would go
    refused = runner.run("day-2")
    message = one_clear_line(refused)
    assert "mirror would exclude 30 of the 100 identifiers in the list (30.0%), more than destination.max_exclude_fraction=0.2" in message
    assert "--yes" in message and "Nothing was sent" in message
    assert sandbox.state()["attempts"] == [] and runner.state()["current"] == "day-1"

    write_source(source, [])  # an empty export (header only)
    assert "no data rows" in one_clear_line(runner.run("day-3"))

    write_source(source, range(70))
    dry = runner.run("day-4", "--dry-run")
    assert dry.returncode == 0 and "a real run would refuse this without --yes" in dry.stdout
    assert sandbox.state()["attempts"] == []

    confirmed = runner.run("day-5", "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert sorted(requests_by_action(sandbox)["exclude"]) == sorted(hexes(range(70, 100)))
    assert set(runner.state_identifiers()) == hexes(range(70))


def test_a_higher_limit_lets_a_large_removal_through(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror", max_exclude_fraction=0.5), sandbox_env)
    write_source(source, range(20))
    assert runner.run("day-1").returncode == 0
    write_source(source, range(10))
    assert runner.run("day-2").returncode == 0  # exactly 50%: allowed
    write_source(source, range(4))
    assert "more than destination.max_exclude_fraction=0.5" in one_clear_line(runner.run("day-3"))


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror", limits={"batch_size": 10, "requests_per_second": 2}), sandbox_env)
    write_source(source, range(100))
    assert runner.run("day-1").returncode == 0
    before = runner.state()
    sandbox.reset()
    write_source(source, range(5, 140))
    dry = runner.run("day-2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ("sync plan (mirror, against state version day-1): 40 to include, 5 to exclude (5.0% of the 100 in the list), "
            "95 unchanged, 0 skipped (rejected by an earlier run); 5 requests, estimated send time at the limits 2.5s; "
            "dry run: nothing sent, state unchanged") in dry.stdout
    assert sandbox.state()["attempts"] == []
    assert runner.state() == before
    lines = runner.manifest("day-2")
    assert [(line["action"], line["status"]) for line in lines] == [("include", "dry_run")] * 4 + [("exclude", "dry_run")]


def test_rollback_restores_the_previous_state(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    runner = Runner(tmp_path, sync_job(tmp_path, "mirror"), sandbox_env)
    write_source(source, range(100))
    assert runner.run("day-1").returncode == 0
    write_source(source, range(10, 110))
    assert runner.run("day-2").returncode == 0
    assert runner.state()["current"] == "day-2"

    rolled = runner.cli("state", "rollback", "--to", "day-1")
    assert rolled.returncode == 0, rolled.stderr
    assert "the current version was day-2 (100 identifiers), now it is day-1" in rolled.stdout
    shown = runner.state()
    assert shown["current"] == "day-1" and [v["run_id"] for v in shown["versions"]] == ["day-2", "day-1"]
    assert shown["rollbacks"][0]["rollback_from"] == "day-2"
    assert set(runner.state_identifiers()) == hexes(range(100))

    sandbox.reset()
    assert runner.run("day-3").returncode == 0  # the same file as day-2: day-2's changes go out again
    sent = requests_by_action(sandbox)
    assert sorted(sent["include"]) == sorted(hexes(range(100, 110))) and sorted(sent["exclude"]) == sorted(hexes(range(10)))
    assert runner.state()["versions"][0] | {"written_at": None} == {
        "run_id": "day-3", "parent": "day-1", "written_at": None, "how": "run", "identifiers": 100, "rejected": 0,
        "added": 10, "removed": 10, "newly_rejected": 0, "forgotten": 0}

    assert "no such state version" in one_clear_line(runner.cli("state", "rollback", "--to", "day-9"))
    text = runner.cli("state", "show")
    assert text.returncode == 0 and "* day-3" in text.stdout and "rolled back at" in text.stdout


def test_state_on_s3(tmp_path, sandbox, sandbox_env, moto_s3, bucket) -> None:
    client = moto_s3["client"]
    job = sync_job(tmp_path, "mirror")
    job["output"] = {"uri": f"s3://{bucket}/pipeline/", "server_side_encryption": "AES256"}
    runner = Runner(tmp_path, job, {**sandbox_env, **moto_s3["env"]})
    source = tmp_path / "export.csv"
    write_source(source, range(60))
    assert runner.run("day-1").returncode == 0
    sandbox.reset()
    assert runner.run("day-2").returncode == 0
    assert sandbox.state()["attempts"] == []  # the state came back from S3

    write_source(source, range(5, 65))
    first = runner.run("day-3")
    assert first.returncode == 0, first.stderr
    sent = requests_by_action(sandbox)
    assert sorted(sent["include"]) == sorted(hexes(range(60, 65))) and sorted(sent["exclude"]) == sorted(hexes(range(5)))

    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="pipeline/test-audience/_state/")["Contents"]}
    [folder] = {key.split("/")[3] for key in keys}
    prefix = f"pipeline/test-audience/_state/{folder}/"
    assert keys == {prefix + "state.json", prefix + "day-1.parquet", prefix + "day-3.parquet"}  # pending plans removed
    assert client.head_object(Bucket=bucket, Key=prefix + "day-3.parquet")["ServerSideEncryption"] == "AES256"
    assert not (tmp_path / "out").exists()

    shown = runner.cli("state", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == f"s3://{bucket}/{prefix.rstrip('/')}"
    assert runner.cli("state", "rollback", "--to", "day-1").returncode == 0
    sandbox.reset()
    assert runner.run("day-4").returncode == 0
    sent = requests_by_action(sandbox)
    assert sorted(sent["include"]) == sorted(hexes(range(60, 65))) and sorted(sent["exclude"]) == sorted(hexes(range(5)))


def test_unsubscribes_are_never_submitted_twice_and_the_state_holds_no_raw_email(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "unsubscribes.csv"
    job = unsubscribe_job(tmp_path, source, sync_mode="incremental")
    runner = Runner(tmp_path, job, sandbox_env)
    pl.DataFrame({"email": [f"Leaver{i}@Example.com" for i in range(6)]}).write_csv(source)
    assert runner.run("day-1").returncode == 0
    pl.DataFrame({"email": [f"leaver{i}@example.com " for i in range(9)]}).write_csv(source)
    done = runner.run("day-2")
    assert done.returncode == 0, done.stderr
    sent = Counter(r["identifiers"][0] for r in sandbox.state()["received"])
    assert sent == Counter({f"leaver{i}@example.com": 1 for i in range(9)})
    assert runner.summary("day-2")["sync"]["unchanged"] == 6

    expected = {hashlib.sha256(f"leaver{i}@example.com".encode()).hexdigest() for i in range(9)}
    assert set(runner.state_identifiers()) == expected
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            assert b"leaver" not in data, path  # no raw email in any state, plan, manifest or summary file


def test_privacy_requests_are_not_resubmitted_but_a_new_request_type_is(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "privacy.csv"
    columns = {"request_type": "type", "email": "email", "phone": "phone"}
    runner = Runner(tmp_path, partnership_job(tmp_path, source, columns, endpoint="network_privacy", sync_mode="incremental"), sandbox_env)

    def write(rows: list[tuple[str, str | None, str | None]]) -> None:
        pl.DataFrame(rows, schema=["type", "email", "phone"], orient="row").write_csv(source)

    write([("NETWORK_OPT_OUT", "Quiet@Example.com", None), ("NETWORK_OPT_OUT", None, "(415) 555-0199")])
    assert runner.run("day-1").returncode == 0
    sandbox.reset()
    write([("NETWORK_OPT_OUT", "quiet@example.com", None), ("NETWORK_OPT_OUT", None, "+1 415 555 0199"),
           ("NETWORK_DATA_DELETION", "quiet@example.com", None), ("NETWORK_OPT_OUT", "new@example.com", None)])
    done = runner.run("day-2")
    assert done.returncode == 0, done.stderr
    sent = sorted((r["request_type"], r["identifiers"][0]) for r in sandbox.state()["received"])
    assert sent == [("NETWORK_DATA_DELETION", "quiet@example.com"), ("NETWORK_OPT_OUT", "new@example.com")]
    assert runner.summary("day-2")["sync"]["unchanged"] == 1  # the phone opt-out; quiet's opt-out is superseded
    stored = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert b"quiet@" not in stored and b"4155550199" not in stored


def test_a_resumed_run_id_sends_only_what_failed(tmp_path, sandbox, sandbox_env) -> None:
    write_source(tmp_path / "export.csv", range(50))
    runner = Runner(tmp_path, sync_job(tmp_path, "incremental", retry={"max_attempts": 1}), sandbox_env)
    sandbox.faults({"script": [{"kind": "none"}, {"kind": "status", "status": 500}]})
    assert runner.run("nightly").returncode == 1
    sandbox.reset()
    resumed = runner.run("nightly")
    assert resumed.returncode == 0, resumed.stderr
    assert runner.summary("nightly")["batches_by_status"] == {"accepted": 1, "already_accepted": 4}
    assert len(sandbox.state()["received"]) == 1
    assert set(runner.state_identifiers()) == hexes(range(50))
    assert [v["run_id"] for v in runner.state()["versions"]] == ["nightly"]


def test_a_run_killed_mid_way_is_folded_in_by_the_next_one(tmp_path, sandbox, sandbox_env) -> None:
    write_source(tmp_path / "export.csv", range(80))
    runner = Runner(tmp_path, sync_job(tmp_path, "incremental"), sandbox_env)
    killed = subprocess.run([sys.executable, "-m", "pipeline", "run", str(runner.path), "--run-id", "killed"], cwd=ROOT,
                            env={**os.environ, **sandbox_env, "ROKT_PIPELINE_KILL_AT": "after_ledger:3"},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert runner.state()["pending_runs"] == ["killed"]
    delivered_before = {batch_digest(r["identifiers"]) for r in sandbox.state()["received"]}
    assert len(delivered_before) == 3

    done = runner.run("next-day")  # a new run id: the killed run's ledger says what is already delivered
    assert done.returncode == 0, done.stderr
    requests = sandbox.state()["received"]
    assert Counter(h for r in requests for h in r["identifiers"]) == Counter(hexes(range(80)))  # each exactly once
    shown = runner.state()
    assert [v["run_id"] for v in shown["versions"]] == ["next-day", "killed"] and shown["pending_runs"] == []
    assert runner.summary("next-day")["sync"]["caught_up_runs"] == ["killed"]


def test_sync_accounting_adds_up(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "export.csv"
    job = sync_job(tmp_path, "incremental")
    job["source"]["max_reject_fraction"] = 0.5
    runner = Runner(tmp_path, job, sandbox_env)
    pl.DataFrame({"email": emails(range(30)) + ["not-an-email"]}).write_csv(source)
    assert runner.run("day-1").returncode == 0
    pl.DataFrame({"email": emails(range(40)) + ["still-not-an-email", ""] + emails(range(3))}).write_csv(source)
    assert runner.run("day-2").returncode == 0
    facts = runner.summary("day-2")
    sync = facts["sync"]
    assert (facts["rows_read"], facts["rows_rejected"], facts["duplicates_dropped"]) == (45, 2, 3)
    assert (sync["unchanged"], sync["new"], facts["identifiers"], facts["identifiers_accepted"]) == (30, 10, 10, 10)
    assert facts["rows_read"] == (facts["rows_rejected"] + facts["duplicates_dropped"] + sync["unchanged"]
                                  + sync["skipped_rejected"] + sync["new"])


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (lambda tmp: unsubscribe_job(tmp, tmp / "export.csv", sync_mode="mirror"), "sync_mode: mirror needs an endpoint that can remove"),
        (lambda tmp: sync_job(tmp, "mirror", action="exclude"), "action: mirror sends include for identifiers new in the file"),
        (lambda tmp: sync_job(tmp, "mirror", send="email"), "send: mirror removes identifiers by the SHA-256"),
        (lambda tmp: sync_job(tmp, "incremental", max_exclude_fraction=0.5), "max_exclude_fraction: only used with sync_mode: mirror"),
        (lambda tmp: sync_job(tmp, "mirrored"), "destination.sync_mode: Input should be 'full', 'incremental' or 'mirror'"),
    ],
    ids=["mirror-elsewhere", "mirror-exclude", "mirror-email", "fraction-without-mirror", "unknown-mode"],
)
def test_sync_config_mistakes_are_one_clear_line(tmp_path, sandbox, sandbox_env, job, expected) -> None:
    write_source(tmp_path / "export.csv", range(3))
    done = run_cli("run", str(write_job(tmp_path, job(tmp_path))), env=sandbox_env)
    assert expected in one_clear_line(done)
    assert sandbox.state()["attempts"] == []


def test_state_commands_need_a_sync_job(tmp_path, sandbox, sandbox_env) -> None:
    path = write_job(tmp_path, audience_job(tmp_path, tmp_path / "export.csv"))
    for args in (["state", "show"], ["state", "rollback", "--to", "day-1"]):
        done = run_cli(*args, "--config", str(path), env=sandbox_env)
        assert "sync_mode is full: this job keeps no state" in one_clear_line(done)
