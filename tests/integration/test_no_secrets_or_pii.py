"""Every endpoint family with recognisable secrets and raw identifiers: none of them may reach an output file,
a log line (text, JSON or verbose), an error message or the repr of a config object."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import load_job
from pipeline.sandbox.process import start_sandbox_process
from tests.conftest import (
    ROOT, TEST_MINUTE_SECONDS, audience_job, deletion_job, partnership_job, run_cli, unsubscribe_job, write_job,
)

SECRETS = {
    "ROKT_PUBLIC_KEY": "rpub-PUBLICKEY-7c1d",
    "ROKT_SECRET_KEY": "rsec-TOPSECRET-9f8e",
    "ROKT_APP_ID": "APPID-5b4a",
    "ROKT_APP_SECRET": "APPSECRET-3c2d",
    "ROKT_WEBHOOK_API_KEY": "WEBHOOKKEY-1e0f",
    "ROKT_PARTNER_TOKEN": "PARTNERTOKEN-a9b8",
    "ROKT_PARENT_ACCOUNT_ID": "1000000000000000001",
}


@pytest.fixture(scope="module")
def secret_sandbox():
    sandbox = start_sandbox_process(
        "--public-key", SECRETS["ROKT_PUBLIC_KEY"], "--secret-key", SECRETS["ROKT_SECRET_KEY"],
        "--app-id", SECRETS["ROKT_APP_ID"], "--app-secret", SECRETS["ROKT_APP_SECRET"],
        "--webhook-api-key", SECRETS["ROKT_WEBHOOK_API_KEY"], "--partner-token", SECRETS["ROKT_PARTNER_TOKEN"],
        "--minute-seconds", TEST_MINUTE_SECONDS,
    )
    yield sandbox
    sandbox.stop()


def raw_identifier_cells(path: Path, columns: list[str]) -> set[str]:
    """Every email or phone cell of an input exactly as written (surrounding spaces aside), and normalised."""
    frame = pl.read_csv(path, infer_schema=False)
    cells = set()
    for column in columns:
        for value in frame[column].drop_nulls().to_list():
            if "@" in value or len(re.findall(r"\d", value)) >= 7:
                cells |= {value.strip(), re.sub(r"\s", "", value).lower()}
    return {cell for cell in cells if len(cell) >= 5}


def test_no_secret_or_raw_identifier_anywhere(tmp_path, secret_sandbox) -> None:
    env = {**SECRETS, "ROKT_SANDBOX_URL": secret_sandbox.url, "ROKT_PIPELINE_TEST_MINUTE_SECONDS": TEST_MINUTE_SECONDS}
    data = ROOT / "sample_data"
    # Raw emails on the wire wherever the endpoint allows it, so the sandbox's 400 answers quote them back.
    jobs = {
        "audience": audience_job(tmp_path, data / "customers.csv", limits={"batch_size": 60}, send="email"),
        "deletion": deletion_job(tmp_path, data / "deletion_requests.csv", limits={"batch_size": 20}, send="email"),
        "unsubscribe": unsubscribe_job(tmp_path, data / "unsubscribes.csv"),
        "privacy": partnership_job(tmp_path, data / "privacy_requests.csv",
                                   {"request_type": "request_type", "email": "email", "phone": "phone", "sha256": "email_sha256"},
                                   endpoint="network_privacy"),
        "accounts": partnership_job(tmp_path, data / "offboarded_merchants.csv", {"account_id": "merchant_account_id"},
                                    endpoint="account_deletion", operation_poll_seconds=1),
    }
    inputs = {data / "customers.csv": ["Email Address"], data / "deletion_requests.csv": ["email"],
              data / "unsubscribes.csv": ["email"], data / "privacy_requests.csv": ["email", "phone"]}
    secret_sandbox.limits({"data_deletion": {"requests_per_second": 10, "concurrency": 1}})
    for family in ("audience_import", "data_deletion", "nurture_unsubscribe", "network_privacy"):
        # Each family's first writes are refused with a 400 that echoes what they carried (real APIs do).
        secret_sandbox.faults({"family": family, "method": "POST", "script": [{"kind": "status", "status": 400}] * 2})
    secret_sandbox.faults({"rates": [{"rate": 0.2, "status": 503}, {"rate": 0.05, "status": 400}], "seed": 3})
    logs = []
    for name, job in jobs.items():
        path = write_job(tmp_path, job, f"{name}.yaml")
        # --force: each run sends again (the delivery register would otherwise skip the export the first one sent)
        for extra in ([], ["--log-format", "json", "--force"], ["--verbose", "--force"], ["--dry-run"]):
            done = run_cli("run", str(path), *extra, env=env)
            assert done.returncode in (0, 1), done.stderr
            logs.append(done.stdout + done.stderr)
        wrong = run_cli("run", str(path), env={**env, **{k: v + "-WRONG" for k, v in SECRETS.items() if k != "ROKT_PARENT_ACCOUNT_ID"}})
        logs.append(wrong.stdout + wrong.stderr)
        assert "Traceback" not in wrong.stderr
        logs.append(run_cli("status", "--config", str(path), "--run-id", "nope", env=env).stderr)
        assert repr(load_job(path, environment=env)).count("**********") >= 1
        for value in SECRETS.values():
            if value != SECRETS["ROKT_PARENT_ACCOUNT_ID"]:
                assert value not in repr(load_job(path, environment=env))

    deletion_path = tmp_path / "deletion.yaml"
    for command in (["list"], ["list", "--json"], ["cancel", "no-such-task"]):
        done = run_cli("deletions", *command, "--config", str(deletion_path), env=env)
        logs.append(done.stdout + done.stderr)

    written = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())
    everything = written + "\n".join(logs)
    basic = base64.b64encode(f"{SECRETS['ROKT_PUBLIC_KEY']}:{SECRETS['ROKT_SECRET_KEY']}".encode()).decode()
    forbidden = [v for k, v in SECRETS.items() if k != "ROKT_PARENT_ACCOUNT_ID"] + [basic]
    state = secret_sandbox.state()
    raw_identifiers = {v for r in state["received"] for v in r.get("identifiers", []) if "@" in v or v.startswith("+")}
    raw_identifiers |= {e for t in state["data_deletion"]["tasks"] for e in t["rawEmails"]}
    assert len(raw_identifiers) > 100  # the runs really sent raw emails and phones
    echoed = [a for a in state["attempts"] if a["status"] == 400 and a["fault"] == "status"]
    assert {a["family"] for a in echoed} >= {"audience_import", "data_deletion", "nurture_unsubscribe", "network_privacy"}
    raw_cells = {cell for path, columns in inputs.items() for cell in raw_identifier_cells(path, columns)}
    assert len(raw_cells) > 300
    for needle in forbidden + sorted(raw_identifiers | raw_cells):
        assert needle not in everything, f"found {needle[:4]}… in outputs or logs"
