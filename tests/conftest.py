"""Shared fixtures: a real sandbox process on loopback, job files, and the real CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipeline.config import load_job
from pipeline.endpoints.registry import endpoint_for
from pipeline.prepare.stream import PreparedStream
from pipeline.runner import open_stream
from pipeline.sandbox.state import Credentials
from pipeline.storage import LocalStore
from pipeline.sandbox.process import SandboxProcess, start_sandbox_process

ROOT = Path(__file__).resolve().parent.parent
# The Partnerships limits are published per minute (10 writes): the tests' sandbox and client count a minute of one
# second, so those families run at 10 a second here. Tests of the minute itself set their own.
TEST_MINUTE_SECONDS = "1"
SANDBOX_CREDENTIALS = Credentials().as_environment() | {"ROKT_PIPELINE_TEST_MINUTE_SECONDS": TEST_MINUTE_SECONDS}


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    sandbox = start_sandbox_process("--minute-seconds", TEST_MINUTE_SECONDS)
    yield sandbox
    sandbox.stop()


@pytest.fixture()
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    sandbox_process.reset()
    return sandbox_process


@pytest.fixture()
def sandbox_env(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**SANDBOX_CREDENTIALS, "ROKT_SANDBOX_URL": sandbox.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def audience_job(tmp_path: Path, source: Path | str, *, columns: dict[str, str] | None = None, **destination: Any) -> dict[str, Any]:
    """A job dict for the v3 audience import against the sandbox; override any destination key."""
    return {
        "job": "test-audience",
        "source": {"uri": str(source), "columns": columns or {"email": "Email Address"}},
        "destination": {
            "endpoint": "audience_import",
            "base_url": "${ROKT_SANDBOX_URL}",
            "account_id": "123456789",
            "action": "include",
            "list": "US_Customers",
            "credentials": {"public_key": "${ROKT_PUBLIC_KEY}", "secret_key": "${ROKT_SECRET_KEY}"},
            "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.5},
            **destination,
        },
        "output": {"uri": str(tmp_path / "out")},
    }


def write_job(tmp_path: Path, job: dict[str, Any], name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def open_job_stream(folder: Path, job: dict[str, Any], name: str = "job") -> tuple[PreparedStream, Path]:
    """The job's stream, opened as a run opens it (no sandbox needed: nothing is sent), and its output folder."""
    config = load_job(write_job(folder, job, f"{name}.yaml"),
                      environment={**SANDBOX_CREDENTIALS, "ROKT_SANDBOX_URL": "http://127.0.0.1:9"})
    out = folder / f"out-{name}"
    out.mkdir()
    return open_stream(config, endpoint_for(config), LocalStore(out), out), out


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )


def received_identifiers(state: dict[str, Any], family: str = "audience_import") -> list[str]:
    return [value for request in state["received"] if request["family"] == family for value in request["identifiers"]]


def deletion_job(tmp_path: Path, source: Path | str, **destination: Any) -> dict[str, Any]:
    return {
        "job": "test-deletion",
        "source": {"uri": str(source), "columns": {"email": "email"}, "max_reject_fraction": 0.2},
        "destination": {
            "endpoint": "data_deletion",
            "base_url": "${ROKT_SANDBOX_URL}",
            "account_id": "2456192011195196284677",
            "credentials": {"app_id": "${ROKT_APP_ID}", "app_secret": "${ROKT_APP_SECRET}"},
            "limits": {"batch_size": 10, "requests_per_second": 10},
            "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.5},
            **destination,
        },
        "output": {"uri": str(tmp_path / "out")},
    }


def unsubscribe_job(tmp_path: Path, source: Path | str, **destination: Any) -> dict[str, Any]:
    return {
        "job": "test-unsubscribe",
        "source": {"uri": str(source), "columns": {"email": "email"}, "max_reject_fraction": 0.2},
        "destination": {
            "endpoint": "nurture_unsubscribe",
            "base_url": "${ROKT_SANDBOX_URL}",
            "credentials": {"api_key": "${ROKT_WEBHOOK_API_KEY}"},
            "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.5},
            **destination,
        },
        "output": {"uri": str(tmp_path / "out")},
    }


def read_manifest(out: Path, *, with_sending_lines: bool = False) -> list[dict[str, Any]]:
    """The manifest's lines; without the lines that record a request about to be sent, unless asked for."""
    import json

    [path] = out.glob("*/*/manifest.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines if with_sending_lines else [line for line in lines if line.get("record") != "sending"]


def read_summary(out: Path) -> dict[str, Any]:
    import json

    [path] = out.glob("*/*/summary.json")
    return json.loads(path.read_text())


# Every Unicode White_Space character, written out here apart from normalise.py (unicodedata does not hold the property).
WHITE_SPACE = (" \t\n\r\x0b\x0c\x85\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
               "\u2028\u2029\u202f\u205f\u3000")


def invisible(character: str) -> bool:
    """What normalisation removes, by Python's own Unicode database: White_Space, format characters (Cf) and
    variation selectors."""
    import unicodedata

    return (character in WHITE_SPACE or unicodedata.category(character) == "Cf"
            or "VARIATION SELECTOR" in unicodedata.name(character, ""))


def reference_normalise(value: str) -> str:
    return "".join(c for c in value if not invisible(c)).lower()


def accepted_by_email_validator(address: str) -> bool:
    """The independent oracle: email-validator's syntax checks (no DNS), Python per value."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def reference_email(value: str | None) -> str | None:
    """`value` normalised, when it is an address the pipeline must send; else None. email-validator decides, with the
    one rule the grammar adds on ASCII: a top-level domain of letters only, or punycode (pipeline/prepare/email_grammar.py)."""
    if value is None:
        return None
    normalised = reference_normalise(value)
    top_level = normalised.rsplit(".", 1)[-1]
    if not (top_level.isalpha() or top_level.startswith("xn--")) or not accepted_by_email_validator(normalised):
        return None
    return normalised


def valid_normalised_emails(path: Path, column: str = "email") -> set[str]:
    import polars as pl

    values = pl.read_csv(path, infer_schema=False)[column].drop_nulls().to_list()
    return {email for email in map(reference_email, values) if email is not None}


def partnership_job(tmp_path: Path, source: Path | str, columns: dict[str, str], **destination: Any) -> dict[str, Any]:
    return {
        "job": f"test-{destination['endpoint'].replace('_', '-')}",
        "source": {"uri": str(source), "columns": columns, "max_reject_fraction": 1.0},
        "destination": {
            "base_url": "${ROKT_SANDBOX_URL}",
            "parent_account_id": "${ROKT_PARENT_ACCOUNT_ID}",
            "credentials": {"token": "${ROKT_PARTNER_TOKEN}"},
            "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.5},
            **destination,
        },
        "output": {"uri": str(tmp_path / "out")},
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, Any]]:
    """A real S3 API on loopback (moto in server mode); boto3 and the CLI reach it over HTTP."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in S3_ENV.items():
        os.environ.setdefault(key, value)
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    yield {"url": url, "client": client, "env": {**S3_ENV, "AWS_ENDPOINT_URL": url}}
    server.stop()


@pytest.fixture()
def bucket(moto_s3: dict[str, Any], request: pytest.FixtureRequest) -> str:
    import re

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-" + os.urandom(3).hex()
    moto_s3["client"].create_bucket(Bucket=name)
    return name
