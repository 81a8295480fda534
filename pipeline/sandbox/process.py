"""Start the sandbox as a separate process (as a user would) and find its URL: for the demo and the tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    url: str

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/state", timeout=10).json()

    def reset(self) -> None:
        requests.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()

    def faults(self, plan: dict[str, Any]) -> None:
        requests.post(f"{self.url}/_sandbox/faults", data=json.dumps(plan), timeout=10).raise_for_status()

    def advance_days(self, days: float) -> None:
        requests.post(f"{self.url}/_sandbox/clock", data=json.dumps({"advance_days": days}), timeout=10).raise_for_status()

    def configure(self, options: dict[str, Any]) -> None:
        requests.post(f"{self.url}/_sandbox/config", data=json.dumps(options), timeout=10).raise_for_status()

    def limits(self, limits: dict[str, dict[str, float]]) -> None:
        requests.post(f"{self.url}/_sandbox/limits", data=json.dumps(limits), timeout=10).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_sandbox_process(*extra_args: str, startup_seconds: float = 20.0) -> SandboxProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sandbox", "--port", "0", *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + startup_seconds
    line = process.stdout.readline()
    if "listening on " not in line:
        process.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    url = line.split("listening on ", 1)[1].split()[0]
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return SandboxProcess(process, url)
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("sandbox did not answer its health check")
