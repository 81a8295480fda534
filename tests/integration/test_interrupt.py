"""Ctrl-C during a run: requests already on the wire are answered and recorded, queued batches are not sent,
and a resume with the same --run-id sends exactly the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.conftest import ROOT, audience_job, run_cli, write_job

CONCURRENCY = 4


def test_interrupt_finishes_what_is_in_flight_and_resume_sends_the_rest(tmp_path, sandbox, sandbox_env) -> None:
    source = tmp_path / "customers.csv"
    emails = [f"user{i}@example.com" for i in range(300)]
    source.write_text("Email Address\n" + "\n".join(emails) + "\n")
    job = audience_job(tmp_path, source, limits={"batch_size": 10, "requests_per_second": 4, "concurrency": CONCURRENCY})
    path = str(write_job(tmp_path, job))
    sandbox.faults({"latency_seconds": 0.3})  # requests are in flight when the interrupt comes

    process = subprocess.Popen([sys.executable, "-m", "pipeline", "run", path, "--run-id", "ctrl-c"], cwd=ROOT,
                               env={**os.environ, **sandbox_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(sandbox.state()["received"]) < 6:
        time.sleep(0.02)
    reached_before = len(sandbox.state()["received"])
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "run again with the same --run-id to resume" in stderr

    received = sandbox.state()["received"]
    # Only what was already on the wire (at most one request per concurrency slot) reached the API afterwards;
    # before, the up to 2 x concurrency batches queued for the workers were sent too.
    assert len(received) <= reached_before + CONCURRENCY
    manifest = [json.loads(line) for line in next((tmp_path / "out").glob("*/ctrl-c/manifest.jsonl")).read_text().splitlines()]
    assert len(manifest) == len(received)  # every request that reached the API is recorded
    assert {r["status"] for r in manifest} == {"accepted"}
    assert len(manifest) < len(emails) // 10

    sandbox.faults({"latency_seconds": 0})
    resumed = run_cli("run", path, "--run-id", "ctrl-c", env=sandbox_env)
    assert resumed.returncode == 0, resumed.stderr
    sent = Counter(identifier for r in sandbox.state()["received"] for identifier in r["identifiers"])
    assert len(sent) == len(emails) and set(sent.values()) == {1}  # all of them, none twice
