"""Partnerships API end to end: network privacy identifier rules, phones, supersede; account deletion keys."""

from __future__ import annotations

import base64
import hashlib
import json

import polars as pl

from tests.conftest import partnership_job, read_manifest, read_summary, run_cli, write_job

PRIVACY_COLUMNS = {"request_type": "type", "email": "email", "phone": "phone", "sha256": "hash"}


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def privacy_file(tmp_path, rows):
    path = tmp_path / "privacy.csv"
    pl.DataFrame(rows, schema=["type", "email", "phone", "hash"], orient="row").write_csv(path)
    return path


def test_identifier_rules_phones_and_supersede(tmp_path, sandbox, sandbox_env) -> None:
    rows = [
        ("NETWORK_OPT_OUT", " Opt@Example.com", None, None),            # ok: email
        ("network_opt_out", None, "(415) 555-0101", None),             # ok: phone, normalised to E.164
        ("NETWORK_OPT_OUT", None, None, sha("x@example.com").hex()),   # hash on an opt-out
        ("NETWORK_OPT_OUT", "both@example.com", "(415) 555-0102", None),  # both
        ("NETWORK_DATA_DELETION", "del@example.com", None, None),      # ok: email
        ("NETWORK_DATA_DELETION", None, None, sha("h@example.com").hex()),  # ok: hex converted to base64
        ("NETWORK_DATA_DELETION", None, "(415) 555-0103", None),       # phone on a deletion
        ("NETWORK_DATA_DELETION", "a@example.com", None, sha("a@example.com").hex()),  # both
        ("NETWORK_FORGET_ME", "who@example.com", None, None),          # unknown type
        ("NETWORK_OPT_OUT", None, "not a phone", None),                # unparseable phone
        ("NETWORK_OPT_OUT", None, None, None),                         # nothing at all
        ("NETWORK_OPT_OUT", "twice@example.com", None, None),          # superseded by the deletion below
        ("NETWORK_DATA_DELETION", None, None, base64.b64encode(sha("twice@example.com")).decode()),
    ]
    job = partnership_job(tmp_path, privacy_file(tmp_path, rows), PRIVACY_COLUMNS, endpoint="network_privacy")
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    sent = sorted((r["request_type"], r["key"], r["identifiers"][0]) for r in state["received"])
    assert sent == sorted([
        ("NETWORK_OPT_OUT", "email", "opt@example.com"),
        ("NETWORK_OPT_OUT", "phone", "+14155550101"),
        ("NETWORK_DATA_DELETION", "email", "del@example.com"),
        ("NETWORK_DATA_DELETION", "sha256Email", base64.b64encode(sha("h@example.com")).decode()),
        ("NETWORK_DATA_DELETION", "sha256Email", base64.b64encode(sha("twice@example.com")).decode()),
    ])
    assert state["partnerships"]["idempotency_headers_on_network_privacy"] == 0  # never an Idempotency-Key
    reasons = {int(line.split(",")[1]): line.split(",", 3)[3].strip('"') for line in
               next((tmp_path / "out").glob("*/*/rejects.csv")).read_text().splitlines()[1:]}
    assert reasons == {
        3: "NETWORK_OPT_OUT does not take a hashed email (sha256Email)",
        4: "NETWORK_OPT_OUT takes exactly one of email or phone, not both",
        7: "NETWORK_DATA_DELETION does not take a phone",
        8: "NETWORK_DATA_DELETION takes exactly one of email or sha256Email, not both",
        9: "unknown request type (expected NETWORK_OPT_OUT or NETWORK_DATA_DELETION)",
        10: "not a valid phone number",
        11: "empty: no email, phone or sha256 on this row",
    }
    facts = read_summary(tmp_path / "out")
    assert facts["superseded"] == 1 and facts["rows_read"] == 13
    assert facts["rows_read"] == facts["rows_rejected"] + facts["duplicates_dropped"] + facts["superseded"] + facts["identifiers_accepted"]
    lines = read_manifest(tmp_path / "out")
    by_id = {r["id"]: r for r in state["received"]}
    for line in lines:
        assert line["ids"]["requestId"] == line["ids"]["X-Network-Privacy-Request-Id"] in by_id
        value = by_id[line["ids"]["requestId"]]["identifiers"][0]
        expected_subject = base64.b64decode(value).hex() if line["identifier_kind"] == "sha256Email" else hashlib.sha256(value.encode()).hexdigest()
        assert line["subject"] == expected_subject
    written = "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "opt@example.com" not in written and "+14155550101" not in written


def test_fixed_request_type_and_ambiguous_answers(tmp_path, sandbox, sandbox_env) -> None:
    emails = [f"p{i}@example.com" for i in range(12)]
    path = tmp_path / "optouts.csv"
    pl.DataFrame({"email": emails}).write_csv(path)
    sandbox.faults({"family": "network_privacy", "script": [{"kind": "none"}, {"kind": "reset_after"}, {"kind": "status", "status": 429}]})
    job = partnership_job(tmp_path, path, {"email": "email"}, endpoint="network_privacy", request_type="NETWORK_OPT_OUT")
    path_job = write_job(tmp_path, job)
    assert run_cli("run", str(path_job), "--run-id", "p-1", env=sandbox_env).returncode == 0
    received = [r["identifiers"][0] for r in sandbox.state()["received"]]
    assert set(received) == set(emails) and len(received) == 13  # one answer lost after the server acted
    lines = read_manifest(tmp_path / "out")
    [flagged] = [line for line in lines if line["ambiguous"]]
    duplicate = next(e for e in emails if received.count(e) == 2)
    assert flagged["subject"] == hashlib.sha256(duplicate.encode()).hexdigest()
    again = run_cli("run", str(path_job), "--run-id", "p-1", env=sandbox_env)
    assert again.returncode == 0 and len(sandbox.state()["received"]) == 13  # a resumed run re-sends nothing


def test_a_resume_skips_what_was_accepted_for_the_same_request_type_only(tmp_path, sandbox, sandbox_env) -> None:
    """The input changed between a run and its resume (an export rewritten before a retry): an accepted opt-out
    does not stand in for a deletion of the same person, while an accepted deletion covers an opt-out."""
    job = partnership_job(tmp_path, tmp_path / "privacy.csv", PRIVACY_COLUMNS, endpoint="network_privacy")
    path_job = write_job(tmp_path, job)

    def run_with(rows):
        privacy_file(tmp_path, rows)
        done = run_cli("run", str(path_job), "--run-id", "np-1", env=sandbox_env)
        assert done.returncode == 0, done.stderr
        return sorted((r["request_type"], r["identifiers"][0]) for r in sandbox.state()["received"])

    assert run_with([("NETWORK_OPT_OUT", "x@example.com", None, None),
                     ("NETWORK_DATA_DELETION", "y@example.com", None, None)]) == [
        ("NETWORK_DATA_DELETION", "y@example.com"), ("NETWORK_OPT_OUT", "x@example.com")]
    assert run_with([("NETWORK_DATA_DELETION", "x@example.com", None, None),
                     ("NETWORK_OPT_OUT", "y@example.com", None, None)]) == [
        ("NETWORK_DATA_DELETION", "x@example.com"), ("NETWORK_DATA_DELETION", "y@example.com"),
        ("NETWORK_OPT_OUT", "x@example.com")]
    facts = read_summary(tmp_path / "out")
    assert facts["batches_by_status"] == {"accepted": 1, "already_accepted": 1}


def merchants(tmp_path, accounts):
    path = tmp_path / "merchants.csv"
    pl.DataFrame({"merchant_account_id": accounts}).write_csv(path)
    return path


def account_job(tmp_path, source, **destination):
    return partnership_job(tmp_path, source, {"account_id": "merchant_account_id"}, endpoint="account_deletion",
                           operation_poll_seconds=5, **destination)


def test_dry_run_then_real_run_use_distinct_keys_and_a_rerun_deletes_nothing_more(tmp_path, sandbox, sandbox_env) -> None:
    source = merchants(tmp_path, ["3001", "3002", " 3003 ", "3001"])
    dry = write_job(tmp_path, account_job(tmp_path, source, dry_run=True), "dry.yaml")
    real = write_job(tmp_path, account_job(tmp_path, source), "real.yaml")
    assert run_cli("run", str(dry), "--run-id", "offboard-1", env=sandbox_env).returncode == 0
    assert sandbox.state()["partnerships"]["deletions"] == []
    dry_keys = {line["account_id"]: line["idempotency_key"] for line in read_manifest(tmp_path / "out")}
    assert all(line["operation_status"] == "none (dry run)" for line in read_manifest(tmp_path / "out"))

    done = run_cli("run", str(real), "--run-id", "offboard-1", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    deletions = sandbox.state()["partnerships"]["deletions"]
    assert sorted(d["accountId"] for d in deletions) == ["3001", "3002", "3003"]
    real_lines = [line for line in read_manifest(tmp_path / "out") if not line["dry_run_request"]]
    assert all(line["idempotency_key"] != dry_keys[line["account_id"]] for line in real_lines)
    for line in real_lines:
        assert set(line["ids"]) >= {"request_id", "requestId", "operationId", "X-Partnership-Account-Data-Deletion-Request-Id"}
        assert line["operation_status"] == "completed"

    # the ledger lost (a worker that died before writing it): the same run id replays the same keys
    next((tmp_path / "out").glob("*/offboard-1/manifest.jsonl")).unlink()
    assert run_cli("run", str(real), "--run-id", "offboard-1", env=sandbox_env).returncode == 0
    assert len(sandbox.state()["partnerships"]["deletions"]) == 3
    replayed = {line["account_id"]: line["ids"]["requestId"] for line in read_manifest(tmp_path / "out")}
    assert replayed == {line["account_id"]: line["ids"]["requestId"] for line in real_lines}


def test_lost_answers_recovered_through_the_key_and_operations_polled(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.configure({"partnerships": {"operation_running_polls": 1}})
    sandbox.faults({"family": "account_deletion", "script": [{"kind": "reset_after"}, {"kind": "slow", "delay_seconds": 1.5}]})
    job = account_job(tmp_path, merchants(tmp_path, ["4001", "4002"]), timeout_seconds=1)
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    state = sandbox.state()["partnerships"]
    assert sorted(d["accountId"] for d in state["deletions"]) == ["4001", "4002"]  # one deletion each despite the retries
    lines = read_manifest(tmp_path / "out")
    assert sum(line["attempts"] for line in lines) >= 4
    assert {line["ids"]["operationId"] for line in lines} == {d["operationId"] for d in state["deletions"]}
    assert all(line["operation_status"] == "completed" for line in lines)
    assert all(op["polls"] == 2 for op in state["operations"])  # polled again while it was running


def test_unowned_accounts_are_rejected_one_by_one(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.configure({"partnerships": {"unowned_accounts": ["5002"], "unknown_accounts": ["5003"]}})
    done = run_cli("run", str(write_job(tmp_path, account_job(tmp_path, merchants(tmp_path, ["5001", "5002", "5003", "5004"])))), env=sandbox_env)
    assert done.returncode == 1
    assert sorted(d["accountId"] for d in sandbox.state()["partnerships"]["deletions"]) == ["5001", "5004"]
    by_account = {line["account_id"]: line for line in read_manifest(tmp_path / "out")}
    assert by_account["5002"]["status"] == "rejected" and by_account["5002"]["http_status"] == 403
    assert "does not own this account" in by_account["5002"]["error"]
    assert by_account["5003"]["http_status"] == 404 and read_summary(tmp_path / "out")["stopped_reason"] is None


def test_many_accounts_need_yes(tmp_path, sandbox, sandbox_env) -> None:
    source = merchants(tmp_path, [str(6000 + i) for i in range(3)])
    path = write_job(tmp_path, account_job(tmp_path, source, max_accounts=2))
    refused = run_cli("run", str(path), env=sandbox_env)
    assert refused.returncode == 2 and "more than destination.max_accounts=2" in refused.stderr and "--yes" in refused.stderr
    assert sandbox.state()["attempts"] == []
    dry = write_job(tmp_path, account_job(tmp_path, source, max_accounts=2, dry_run=True), "dry.yaml")
    assert run_cli("run", str(dry), env=sandbox_env).returncode == 0  # a dry run deletes nothing: no --yes needed
    confirmed = run_cli("run", str(path), "--yes", env=sandbox_env)
    assert confirmed.returncode == 0, confirmed.stderr
    assert len(sandbox.state()["partnerships"]["deletions"]) == 3
    assert json.loads(next((tmp_path / "out").glob("*/*/summary.json")).read_text())  # summaries are written


def client_credentials_job(tmp_path, source, columns, **destination):
    """A Partnerships job with a client id and secret, exchanged at the sandbox's token endpoint."""
    job = partnership_job(tmp_path, source, columns, **destination)
    job["destination"]["credentials"] = {"client_id": "${ROKT_PARTNER_CLIENT_ID}", "client_secret": "${ROKT_PARTNER_CLIENT_SECRET}"}
    job["destination"]["auth_url"] = "${ROKT_SANDBOX_URL}/api/v1/oauth/token"
    return job


def opt_outs(tmp_path, count):
    path = tmp_path / "optouts.csv"
    emails = [f"person{i}@example.com" for i in range(count)]
    pl.DataFrame({"email": emails}).write_csv(path)
    return path, emails


def test_short_lived_tokens_are_exchanged_as_they_expire_and_the_published_limits_hold(tmp_path, sandbox, sandbox_env) -> None:
    """30 subjects at the default limits (10 a minute; the minute is 4 s here) outlive several 10-second tokens:
    each subject arrives once, no request carries an expired token, and the sandbox sees no limit broken."""
    minute = "4"
    sandbox.configure({"minute_seconds": float(minute), "partnerships": {"token_lifetime": 10}})
    source, emails = opt_outs(tmp_path, 30)
    job = client_credentials_job(tmp_path, source, {"email": "email"}, endpoint="network_privacy",
                                 request_type="NETWORK_OPT_OUT")
    done = run_cli("run", str(write_job(tmp_path, job)), env={**sandbox_env, "ROKT_PIPELINE_TEST_MINUTE_SECONDS": minute})
    assert done.returncode == 0, done.stderr
    state = sandbox.state()
    assert sorted(r["identifiers"][0] for r in state["received"]) == sorted(emails)  # each subject once
    assert state["partnerships"]["token_requests"] >= 2  # the run outlived its first token
    assert state["partnerships"]["expired_token_uses"] == 0
    assert not [a for a in state["attempts"] if a["status"] in (401, 429)]
    assert state["violations"] == []
    assert "30 requests at 10/min: about 3 min" in done.stderr  # the published minute, whatever the test's minute
    written = "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file()) + done.stdout + done.stderr
    assert "rsec_sandbox" not in written and "access_token" not in written


def test_a_refused_token_is_exchanged_once_more_then_the_run_stops(tmp_path, sandbox, sandbox_env) -> None:
    source, _ = opt_outs(tmp_path, 5)
    job = client_credentials_job(tmp_path, source, {"email": "email"}, endpoint="network_privacy",
                                 request_type="NETWORK_OPT_OUT", limits={"concurrency": 1})
    sandbox.faults({"family": "network_privacy", "script": [{"kind": "status", "status": 401}] * 2})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 1
    assert sandbox.state()["partnerships"]["token_requests"] == 2  # the first token, and one fresh after the 401
    facts = read_summary(tmp_path / "out")
    assert facts["batches_by_status"] == {"rejected": 1, "not_sent": 4}
    assert "refreshing the credentials did not help" in facts["stopped_reason"]


def test_max_duration_stops_cleanly_and_the_same_run_id_finishes(tmp_path, sandbox, sandbox_env) -> None:
    minute = "3"  # 10 requests per 3 s: 30 subjects take about 9 s
    sandbox.configure({"minute_seconds": float(minute)})
    env = {**sandbox_env, "ROKT_PIPELINE_TEST_MINUTE_SECONDS": minute}
    source, emails = opt_outs(tmp_path, 30)
    path = str(write_job(tmp_path, partnership_job(tmp_path, source, {"email": "email"}, endpoint="network_privacy",
                                                   request_type="NETWORK_OPT_OUT")))
    first = run_cli("run", path, "--run-id", "long", "--max-duration", "5s", env=env)
    assert first.returncode == 75, first.stderr
    assert "out of time" in first.stderr and "--run-id long" in first.stderr
    facts = read_summary(tmp_path / "out")
    assert facts["max_duration_reached"] and "max_duration of 5 s reached" in facts["stopped_reason"]
    sent_first = len(sandbox.state()["received"])
    assert 0 < sent_first < 30 and facts["batches_by_status"]["accepted"] == sent_first
    assert read_manifest(tmp_path / "out") and all(line["status"] == "accepted" for line in read_manifest(tmp_path / "out"))

    second = run_cli("run", path, "--run-id", "long", env=env)
    assert second.returncode == 0, second.stderr
    assert sorted(r["identifiers"][0] for r in sandbox.state()["received"]) == sorted(emails)  # all, none twice
    assert sandbox.state()["violations"] == []


def test_request_ids_are_kept_on_success_and_on_error(tmp_path, sandbox, sandbox_env) -> None:
    source, _ = opt_outs(tmp_path, 4)
    sandbox.faults({"family": "network_privacy", "script": [{"kind": "status", "status": 400}]})
    job = partnership_job(tmp_path, source, {"email": "email"}, endpoint="network_privacy", request_type="NETWORK_OPT_OUT",
                          limits={"concurrency": 1})
    assert run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env).returncode == 1
    lines = read_manifest(tmp_path / "out")
    assert sorted(line["status"] for line in lines) == ["accepted"] * 3 + ["rejected"]
    ids = [line["ids"]["request_id"] for line in lines]
    assert len(set(ids)) == 4 and all(len(i) == 36 for i in ids)  # one per answer, the refusal's included

    sandbox.reset()
    sandbox.configure({"partnerships": {"unknown_accounts": ["7702"]}})
    accounts = account_job(tmp_path, merchants(tmp_path, ["7701", "7702"]))
    accounts["output"]["uri"] = str(tmp_path / "accounts-out")
    assert run_cli("run", str(write_job(tmp_path, accounts, "accounts.yaml")), env=sandbox_env).returncode == 1
    by_account = {line["account_id"]: line for line in read_manifest(tmp_path / "accounts-out")}
    assert by_account["7702"]["http_status"] == 404 and len(by_account["7702"]["ids"]["request_id"]) == 36
    assert by_account["7701"]["ids"]["request_id"] and by_account["7701"]["status"] == "accepted"


def test_an_account_deletion_whose_answer_is_lost_is_recovered_from_its_operation(tmp_path, sandbox, sandbox_env) -> None:
    """The API acts and a gateway loses its answer (504, only X-Operation-Id left): the operation says how it ended,
    so nothing is sent again; a failed operation is a refusal with its error code."""
    sandbox.configure({"partnerships": {"operation_running_polls": 1, "failing_accounts": ["8802"]}})
    sandbox.faults({"family": "account_deletion", "script": [{"kind": "error_after", "status": 504}] * 2})
    job = account_job(tmp_path, merchants(tmp_path, ["8801", "8802"]), limits={"concurrency": 1})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 1  # 8802's deletion failed downstream
    state = sandbox.state()
    assert [a["fault"] for a in state["attempts"] if a["family"] == "account_deletion"] == ["error_after"] * 2  # no re-send
    by_account = {line["account_id"]: line for line in read_manifest(tmp_path / "out")}
    recovered, failed = by_account["8801"], by_account["8802"]
    [deletion, _] = state["partnerships"]["deletions"]
    assert recovered["status"] == "accepted" and recovered["recovered_from_operation"] == deletion["operationId"]
    assert recovered["ids"]["requestId"] == deletion["requestId"] and recovered["http_status_seen"] == 504
    assert recovered["operation_status"] == "completed" and recovered["attempts"] == 1
    assert failed["status"] == "rejected" and "failed (DOWNSTREAM_REJECTED)" in failed["error"]


def test_a_resume_after_the_idempotency_key_may_have_expired_says_so(tmp_path, sandbox, sandbox_env) -> None:
    """A request sent without its answer being recorded, resumed a day later: the key no longer protects it, so the
    manifest flags the request it sends again as ambiguous and says why. Resumed within hours, it is not."""
    source = merchants(tmp_path, ["9901", "9902", "9903"])
    path = str(write_job(tmp_path, account_job(tmp_path, source, limits={"concurrency": 1})))
    killed = run_cli("run", path, "--run-id", "late", env={**sandbox_env, "ROKT_PIPELINE_KILL_AT": "after_answer:2"})
    assert killed.returncode == -9
    manifest = next((tmp_path / "out").glob("*/late/manifest.jsonl"))
    lines = manifest.read_text().splitlines()
    sending = [json.loads(line) for line in lines if json.loads(line).get("record") == "sending"]
    assert len(sending) == 2  # the second request went out and died with the process before its answer was kept
    day_ago = "2000-01-01T00:00:00.000Z"  # as good as a day earlier
    manifest.write_text("\n".join(line.replace(sending[1]["started_at"], day_ago) for line in lines) + "\n")
    sandbox.advance_days(1.1)  # and the sandbox has forgotten the key
    resumed = run_cli("run", path, "--run-id", "late", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    final = {line["account_id"]: line for line in read_manifest(tmp_path / "out") if line.get("status") == "accepted"}
    late = final[sending[1]["account_id"]]
    assert late["ambiguous"] and "may have acted on this request twice" in late["idempotency_key_note"]
    assert not final["9903"]["ambiguous"]
    assert len(sandbox.state()["partnerships"]["deletions"]) == 4  # the forgotten key let the API act twice, as flagged
