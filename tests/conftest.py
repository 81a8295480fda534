"""Shared fixtures: a real sandbox process on loopback, job files, and the real CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipeline.sandbox.process import SandboxProcess, start_sandbox_process

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_CREDENTIALS = {
    "ROKT_PUBLIC_KEY": "rpub-sandbox",
    "ROKT_SECRET_KEY": "rsec-sandbox",
    "ROKT_LEGACY_API_KEY": "sandbox-legacy-api-key",
}


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    sandbox = start_sandbox_process()
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


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )


def received_identifiers(state: dict[str, Any], family: str = "audience_import") -> list[str]:
    return [value for request in state["received"] if request["family"] == family for value in request["identifiers"]]
